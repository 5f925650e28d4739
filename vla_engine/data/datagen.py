"""Expert demonstrations -> LeRobot v3 dataset.

``generate_dataset("push", 200, "datasets/push")`` runs the task's scripted expert on seeds
``seed, seed+1, ...``, keeps the successful episodes, and writes them with lerobot's own writer
(see :mod:`vla_engine.data.lerobot_io`) plus the ``meta/vla_engine.json`` sidecar that records
which seeds were used.

Seeds: training data uses small seeds; evaluation uses seeds >= ``EVAL_SEED_START`` (1_000_000),
so training seeds must stay below that (``generate_dataset`` refuses otherwise) and a policy is
never evaluated on a layout it was trained on.

Speed: episodes are simulated in worker processes (``workers``; default one per spare core, at
most two) while the main process writes the previous ones with lerobot's writer, in seed order,
so the dataset does not depend on the number of workers.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import logging
import math
import os
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from tqdm.auto import tqdm

from ..config.run_config import EVAL_SEED_START
from .lerobot_io import (
    ACTION_KEY,
    PLAN_KEY,
    PLAN_VALID_KEY,
    GENERATOR_VERSION,
    IMAGE_KEY,
    STATE_KEY,
    DatasetError,
    LeRobotWriter,
    check_output_dir,
    make_features,
)

log = logging.getLogger(__name__)


class DatagenError(DatasetError):
    """Data generation cannot go on (bad arguments, an expert that never succeeds)."""


# --------------------------------------------------------------------------------------------
# one episode
# --------------------------------------------------------------------------------------------
def rollout_episode(env: Any, expert: Any, seed: int, action_noise: float = 0.0,
                    target_offset: int = 0, plan_horizon: int = 0) -> dict[str, Any]:
    """Run ``expert`` in ``env`` from ``env.reset(seed=seed)`` until the episode ends.

    ``target_offset`` k > 0 keeps the layout that ``seed`` draws but names the k-th next block colour
    after the drawn one (so one layout yields an episode per block: only the words tell them apart).

    ``action_noise`` > 0 injects noise the DART way (Laskey et al. 2017): the env executes
    ``clip(expert + N(0, action_noise^2))`` while the dataset records the expert's clean command, so
    the demonstrations visit slightly-off states and show how the expert recovers from them — the
    states a cloned policy drifts into. The noise is drawn from ``seed``: episodes stay reproducible.

    ``plan_horizon`` H > 0 also records, at every step, the expert's noise-free plan from that state
    (``env.plan_ahead``): ``"action.plan"`` (T, H, A) and ``"action.plan_valid"`` (T, H), 1.0 for the
    rows the plan has (it stops where the episode would end). These are the action-chunk labels for
    DART data: the recorded actions t+1, ... answer noise injected after step t, which no chunk
    predicted at t can foresee.

    Returns ``{"observation.images.front": (T,H,W,3) uint8, "observation.state": (T,S) float32,
    "action": (T,A) float32, "task": str, "seed", "success", "length", "return"}`` where frame t
    pairs the observation seen at step t with the action taken from it.
    """
    obs, info = env.reset(seed=int(seed))
    if target_offset:
        from vla_engine.envs.tasks import BLOCK_COLORS

        drawn = BLOCK_COLORS.index(env.unwrapped.layout.target)
        target = BLOCK_COLORS[(drawn + int(target_offset)) % len(BLOCK_COLORS)]
        obs, info = env.reset(seed=int(seed), options={"target": target})
    if hasattr(expert, "reset"):
        expert.reset()
    u = env.unwrapped
    instruction = str(u.instruction)
    meta = _task_meta(u)
    sensor_obs = dict(meta.get("sensor_obs") or {})  # env obs key -> dataset key (lidar, radar, IMU, ...)
    sensors: dict[str, list] = {key: [] for key in sensor_obs.values()}
    frames, states, actions, plans, plan_lengths = [], [], [], [], []
    success = bool(info.get("is_success", False))
    ret = 0.0
    noise_rng = np.random.default_rng([int(seed), 0xDA27, int(target_offset)])
    for _ in range(int(u.max_episode_steps)):
        if plan_horizon > 0:
            plan, n_valid = u.plan_ahead(expert.act, plan_horizon)  # plan[0] is this step's expert action
            plans.append(plan)
            plan_lengths.append(n_valid)
            action = plan[0].copy()
        else:
            action = np.asarray(expert.act(env), dtype=np.float32)
        frames.append(np.array(obs["pixels"], dtype=np.uint8, copy=True))
        states.append(np.asarray(obs["agent_pos"], dtype=np.float32).copy())
        for obs_key, key in sensor_obs.items():
            sensors[key].append(np.asarray(obs[obs_key], dtype=np.float32).copy())
        actions.append(action.copy())
        executed = action
        if action_noise > 0:
            executed = np.clip(action + noise_rng.normal(0.0, action_noise, action.shape), -1, 1).astype(np.float32)
        obs, reward, terminated, truncated, info = env.step(executed)
        ret += float(reward)
        success = success or bool(info.get("is_success", False))
        if terminated or truncated:
            break
    out = {
        IMAGE_KEY: np.stack(frames),
        STATE_KEY: np.stack(states),
        ACTION_KEY: np.stack(actions),
        "task": instruction,
        "seed": int(seed),
        "target_offset": int(target_offset),
        "success": success,
        "length": len(frames),
        "return": ret,
    }
    out.update({key: np.stack(v) for key, v in sensors.items()})  # (T, ...) each
    if meta.get("episode_labels"):  # labels from the whole episode, e.g. driving waypoints from the poses
        module, attr = str(meta["episode_labels"]).split(":")
        out.update(getattr(importlib.import_module(module), attr)(out))
    if plan_horizon > 0:
        out[PLAN_KEY] = np.stack(plans)  # (T, H, A)
        out[PLAN_VALID_KEY] = (np.arange(plan_horizon)[None, :] < np.asarray(plan_lengths)[:, None]).astype(
            np.float32)  # (T, H)
    return out


def _task_meta(env: Any) -> dict[str, Any]:
    """The registered meta of ``env``'s task (empty for an env of no registered task)."""
    from vla_engine.registry import TASKS

    name = getattr(env, "task_name", None)
    return dict(TASKS.meta(name)) if name in TASKS else {}


_ENVS: dict[tuple[str, int], tuple[Any, Any]] = {}


def _rollout_job(task: str, image_size: int, seed: int, action_noise: float = 0.0,
                 target_offset: int = 0, plan_horizon: int = 0) -> dict[str, Any]:
    """Worker entry point: one env + expert per process, reused across episodes."""
    key = (task, int(image_size))
    if key not in _ENVS:
        from vla_engine.envs import make_env
        from vla_engine.envs.experts import make_expert

        env = make_env(task, image_size=int(image_size))
        _ENVS[key] = (env, make_expert(env))
    env, expert = _ENVS[key]
    return rollout_episode(env, expert, seed, action_noise, target_offset, plan_horizon)


# --------------------------------------------------------------------------------------------
# the dataset
# --------------------------------------------------------------------------------------------
def generate_dataset(
    task: str,
    episodes: int,
    out: str | Path,
    seed: int = 0,
    image_size: int = 96,
    repo_id: str | None = None,
    progress: bool = True,
    only_successful: bool = True,
    on_episode: Callable[[int, int], None] | None = None,
    overwrite: bool = False,
    workers: int | None = None,
    use_videos: bool = False,
    max_attempts: int | None = None,
    action_noise: float = 0.3,
    targets_per_layout: int = 1,
    plan_horizon: int = 0,
) -> Path:
    """Record ``episodes`` expert demonstrations of built-in ``task`` into a LeRobot v3 dataset.

    Args:
        task: a registered task ("reach", "push", "pick-place").
        episodes: how many episodes the dataset gets (successful ones when ``only_successful``).
        out: the dataset folder; must not exist or be empty unless ``overwrite``.
        seed: the first seed; episodes use seed, seed+1, ... (failures are skipped). Training
            seeds must stay below ``EVAL_SEED_START`` (1_000_000): evaluation uses every seed from there on.
        image_size: camera resolution (square).
        repo_id: the dataset's repo id (default "local/<task>").
        progress: show a tqdm bar.
        only_successful: drop episodes in which the expert failed.
        on_episode: called as ``on_episode(i, episodes)`` after episode ``i`` (0-based) is written.
        overwrite: replace an existing non-empty ``out``.
        workers: simulation processes (None: CPU count - 1, at most 2; 0: simulate in this process).
        use_videos: store the camera as mp4 (AV1) instead of PNG frames.
        max_attempts: seeds to try at most (default ``3 * episodes + 10``).
        action_noise: std of the DART noise added to the executed (not the recorded) actions
            (default 0.3, as in DatasetConfig and `vla datagen`); 0 records the expert's own
            trajectories.
        targets_per_layout: episodes per seed's layout, each naming a different block (1-3;
            default 1). With 3, every layout is shown with every colour named, so the instruction is
            the only thing that tells the episodes apart: a cloned policy must ground the words
            (contrastive demonstrations). It takes k times fewer seeds.
        plan_horizon: 0 (default) or H > 0 to record the expert's noise-free H-step plan at every
            frame (features ``action.plan`` (H, A) and ``action.plan_valid`` (H,)), the labels that
            chunking heads train on with ``chunk_labels="plan"`` (see :func:`rollout_episode`).
            Costs about 1 ms of simulation per planned step.

    Returns the dataset folder.
    """
    from vla_engine.envs import task_info

    try:
        meta = task_info(task)
    except KeyError as e:  # RegistryError: "unknown task 'x'; choose one of: ..."
        raise DatagenError(str(e)) from None
    episodes = _whole("episodes", episodes)
    seed = _whole("seed", seed)
    image_size = _whole("image_size", image_size)
    k = _whole("targets_per_layout", targets_per_layout)
    plan_horizon = _whole("plan_horizon", plan_horizon)
    action_noise = _finite("action_noise", action_noise)
    if episodes < 1:
        raise DatagenError(f"episodes must be >= 1, got {episodes}")
    if image_size < 8:
        raise DatagenError(f"image_size must be >= 8, got {image_size}")
    if not 1 <= k <= 3:
        raise DatagenError(f"targets_per_layout must be 1, 2 or 3 (one episode per block colour), got {targets_per_layout}")
    if not 0 <= plan_horizon <= 256:
        raise DatagenError(f"plan_horizon must be 0 (no plans) or 1..256 steps, got {plan_horizon}")
    if action_noise < 0:
        raise DatagenError(f"action_noise must be >= 0 (a standard deviation; 0 = no noise), got {action_noise}")

    attempts_cap = _whole("max_attempts", max_attempts) if max_attempts is not None else 3 * episodes + 10
    if attempts_cap < episodes:
        raise DatagenError(f"max_attempts={attempts_cap} is smaller than episodes={episodes}")
    _check_seed_range(seed, episodes, k)
    attempts_cap = min(attempts_cap, (EVAL_SEED_START - seed) * k)
    out = check_output_dir(out, overwrite=overwrite, remove=False)
    # write next to ``out`` and move into place at the end: an old dataset (overwrite) stays
    # intact until the new one is complete, and a failed run leaves nothing half-written
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp_out.exists():
        shutil.rmtree(tmp_out)
    repo_id = repo_id or f"local/{task}"
    n_workers = _default_workers() if workers is None else max(0, int(workers))
    n_workers = min(n_workers, attempts_cap)

    source = _RolloutSource(task, image_size, seed, attempts_cap, n_workers, action_noise, k, plan_horizon)
    source.start()  # worker processes start simulating while lerobot loads here
    t0 = time.time()
    kept_seeds: list[int] = []
    kept_offsets: list[int] = []
    failed_seeds: list[int] = []
    lengths_ok: list[int] = []
    lengths_all: list[int] = []
    instructions: dict[str, None] = {}
    bar = None
    writer: LeRobotWriter | None = None
    try:
        writer = LeRobotWriter(
            tmp_out,
            repo_id,
            fps=int(meta["fps"]),
            features=make_features(
                image_size, int(meta["state_dim"]), int(meta["action_dim"]), use_videos=use_videos,
                plan_horizon=plan_horizon,
            ) | {k: dict(v) for k, v in (meta.get("extra_features") or {}).items()},  # the task's other sensors
            use_videos=use_videos,
            image_writer_threads=1 if n_workers > 0 else 2,
        )
        if progress:
            bar = tqdm(total=episodes, desc=f"datagen {task}", unit="ep")
        for ep in source:
            lengths_all.append(ep["length"])
            if not ep["success"]:
                failed_seeds.append(ep["seed"])
                if only_successful:
                    if bar is not None:
                        bar.set_postfix(success=f"{len(lengths_ok)}/{len(lengths_all)}")
                    continue
            writer.add_episode({k: ep[k] for k in writer.features}, ep["task"])
            kept_seeds.append(ep["seed"])
            kept_offsets.append(ep["target_offset"])
            if ep["success"]:
                lengths_ok.append(ep["length"])
            instructions[ep["task"]] = None
            if bar is not None:
                bar.update(1)
                bar.set_postfix(success=f"{len(lengths_ok)}/{len(lengths_all)}")
            if on_episode is not None:
                on_episode(len(kept_seeds) - 1, episodes)
            if len(kept_seeds) >= episodes:
                break
        source.close()
        if not kept_seeds:
            raise DatagenError(
                f"the '{task}' expert succeeded in none of {len(lengths_all)} episodes (seeds {seed}.."
                f"{seed + len(lengths_all) - 1}); nothing to write (pass only_successful=False to keep failures)"
            )
        if len(kept_seeds) < episodes:
            log.warning(
                "only %d of %d episodes: the '%s' expert succeeded %d times in %d attempts",
                len(kept_seeds), episodes, task, len(lengths_ok), len(lengths_all),
            )
        attempts = len(lengths_all)
        sidecar = {
            "generator": "vla_engine.data.datagen",
            "generator_version": GENERATOR_VERSION,
            "lerobot_version": _lerobot_version(),
            "task": task,
            "repo_id": repo_id,
            "image_size": image_size,
            "camera": "front",
            "fps": int(meta["fps"]),
            "action_dim": int(meta["action_dim"]),
            "state_dim": int(meta["state_dim"]),
            "max_episode_steps": int(meta["max_episode_steps"]),
            "episodes_requested": episodes,
            "num_episodes": len(kept_seeds),
            "num_frames": writer.num_frames,
            "only_successful": only_successful,
            "action_noise": action_noise,
            "plan_horizon": plan_horizon,
            "seed_start": seed,
            "seeds": kept_seeds,  # seeds[i] generated episode_index i
            "targets_per_layout": k,
            "target_offsets": kept_offsets,  # episode i names the block target_offsets[i] colours after the drawn one
            "seeds_attempted": [seed, seed + (attempts + k - 1) // k],  # [first, end)
            "failed_seeds": failed_seeds,
            "eval_seed_start": EVAL_SEED_START,
            "expert": {
                "attempts": attempts,
                "successes": attempts - len(failed_seeds),
                "success_rate": (attempts - len(failed_seeds)) / attempts,
                "mean_length_successful": float(np.mean(lengths_ok)) if lengths_ok else None,
                "mean_length": float(np.mean(lengths_all)),
            },
            "instructions": list(instructions),
            "use_videos": use_videos,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "duration_s": round(time.time() - t0, 2),
        }
        writer.finalize(sidecar)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp_out, out)
    except BaseException:
        source.close()
        if writer is not None:
            writer.abort()
        shutil.rmtree(tmp_out, ignore_errors=True)  # a half-written dataset is of no use
        raise
    finally:
        if bar is not None:
            bar.close()
    return out


class _Worker:
    """A fresh Python process that simulates episodes (``python -c ...worker_main()``).

    Requests (task, image_size, seed) go down its stdin, pickled rollouts come back on a private
    copy of its stdout, in request order. A fresh interpreter (not fork) is used because a forked
    child of a process that has rendered with EGL/OSMesa deadlocks inside the GL driver, and
    (unlike multiprocessing's spawn) it never re-imports the caller's ``__main__`` script.
    """

    def __init__(self) -> None:
        env = dict(os.environ)  # MUJOCO_GL as vla_engine.envs set it in this process
        env["OMP_NUM_THREADS"] = env.get("OMP_NUM_THREADS", "1")
        root = str(Path(__file__).resolve().parents[2])  # so the package imports from a checkout too
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from vla_engine.data.datagen import _worker_main; _worker_main()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        self.outstanding = 0

    def send(self, *job: Any) -> None:
        """Queue one ``_rollout_job(*job)`` on this worker."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(pickle.dumps(tuple(job), protocol=pickle.HIGHEST_PROTOCOL))
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise self._died() from None
        self.outstanding += 1

    def receive(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        try:
            kind, payload = pickle.load(self.proc.stdout)
        except (EOFError, pickle.UnpicklingError):
            raise self._died() from None
        self.outstanding -= 1
        if kind == "error":
            raise DatagenError(f"episode simulation failed in a worker process: {payload}")
        return payload

    def _died(self) -> DatagenError:
        code = self.proc.wait(timeout=30)
        return DatagenError(
            f"a simulation worker process exited unexpectedly (exit code {code}); see its messages "
            "above, or run with workers=0 to simulate in this process"
        )

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        if self.outstanding and self.proc.poll() is None:
            self.proc.terminate()  # episodes simulated ahead that nobody will read
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        with contextlib.suppress(Exception):
            if self.proc.stdout is not None:
                self.proc.stdout.close()


def _worker_main() -> None:
    """Loop of a simulation worker: read requests from stdin until EOF, answer each in order."""
    out = os.fdopen(os.dup(1), "wb")  # the protocol channel
    os.dup2(2, 1)  # stray prints of libraries go to stderr, never into the protocol
    inp = sys.stdin.buffer
    while True:
        try:
            job = pickle.load(inp)  # (task, image_size, seed, ...) from our own parent process
        except EOFError:
            break
        try:
            msg = ("ok", _rollout_job(*job))
        except Exception as e:  # reported to the parent as a one-line error
            msg = ("error", f"seed {job[2]}: {type(e).__name__}: {e}")
        pickle.dump(msg, out, protocol=pickle.HIGHEST_PROTOCOL)
        out.flush()


class _RolloutSource:
    """Rollouts for seeds seed, seed+1, ... (at most ``cap``), yielded in seed order.

    With ``n_workers > 0``, worker processes simulate ahead of the consumer: seed ``seed + k``
    goes to worker ``k % n_workers``, each holds up to two requests, and answers come back in
    order, so the dataset does not depend on the number of workers.
    """

    def __init__(self, task: str, image_size: int, seed: int, cap: int, n_workers: int,
                 action_noise: float = 0.0, targets_per_layout: int = 1, plan_horizon: int = 0) -> None:
        self.task, self.image_size, self.seed, self.cap, self.n_workers = task, image_size, seed, cap, n_workers
        self.action_noise, self.k, self.plan_horizon = float(action_noise), int(targets_per_layout), int(plan_horizon)
        self._workers: list[_Worker] = []
        self._next_send = 0  # attempt index j: seed + j // k, target offset j % k

    def _job(self, j: int) -> tuple:
        return self.task, self.image_size, self.seed + j // self.k, self.action_noise, j % self.k, self.plan_horizon

    def start(self) -> None:
        if self.n_workers == 0:
            return
        self._workers = [_Worker() for _ in range(self.n_workers)]
        for _ in range(2 * self.n_workers):
            self._send_next()

    def _send_next(self) -> None:
        if self._next_send < self.cap:
            j = self._next_send
            self._workers[j % self.n_workers].send(*self._job(j))
            self._next_send += 1

    def __iter__(self):
        if not self._workers:
            for j in range(self.cap):
                yield _rollout_job(*self._job(j))
            return
        for j in range(self.cap):
            result = self._workers[j % self.n_workers].receive()
            self._send_next()
            yield result

    def close(self) -> None:
        for w in self._workers:
            w.close()
        self._workers = []


def _whole(name: str, value: Any) -> int:
    """``value`` as an int; DatagenError for NaN, inf, a fraction or a non-number."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise DatagenError(f"{name} must be a whole number, got {value!r}") from None
    if not math.isfinite(f) or f != int(f):
        raise DatagenError(f"{name} must be a whole number, got {value!r}")
    return int(f)


def _finite(name: str, value: Any) -> float:
    """``value`` as a float; DatagenError for NaN, inf or a non-number (they would reach the JSON sidecar)."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise DatagenError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(f):
        raise DatagenError(f"{name} must be a finite number, got {value!r}")
    return f


def _check_seed_range(seed: int, episodes: int, k: int) -> None:
    """Training seeds stay below EVAL_SEED_START, so no evaluation layout was ever trained on.

    Each seed gives ``k`` episodes (``targets_per_layout``), so ``(EVAL_SEED_START - seed) * k``
    episodes fit from ``seed``.
    """
    if seed < 0:
        raise DatagenError(f"seed must be >= 0, got {seed}")
    if seed >= EVAL_SEED_START:
        raise DatagenError(
            f"seed {seed} is an evaluation seed (evaluation uses seeds >= {EVAL_SEED_START}); "
            f"choose a --seed below {EVAL_SEED_START}"
        )
    fit = (EVAL_SEED_START - seed) * k
    if episodes > fit:
        fix = "lower --episodes" if seed == 0 or episodes > EVAL_SEED_START * k else "lower --episodes or --seed"
        raise DatagenError(
            f"episodes={episodes} is too many: at most {fit} episodes fit between seed {seed} and the "
            f"evaluation seeds starting at seed {EVAL_SEED_START}; {fix}"
        )


def _lerobot_version() -> str:
    try:
        return importlib.metadata.version("lerobot")
    except Exception:  # pragma: no cover
        return "unknown"


def _default_workers() -> int:
    """Simulation processes: the main process writes (lerobot's writer is the slower half on a
    small machine), so one core is left to it; more than two simulators cannot outrun it."""
    return max(1, min(2, (os.cpu_count() or 1) - 1))
