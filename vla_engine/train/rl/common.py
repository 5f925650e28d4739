"""What every RL trainer shares: reward scaling, the run folder (metrics, checkpoints, resume, Stop)
and the background job (``run_job``) that builds the env and the policy from a run config.

A checkpoint ``checkpoints/step-N/`` (N = environment steps so far) holds the policy as a loadable folder
(``config.json`` + ``model.safetensors``, observation statistics included), ``optimizer.pt`` (the
optimisers' state, read back with ``weights_only=True``), ``trainer_state.json`` (counters, reward
normaliser, RNG) and any trainer extras (SAC: ``replay.npz``). A resumed run loads the last one and goes
on from its step; the envs start fresh episodes (their physics state is not saved), which is the only
difference from an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from ...errors import CheckpointError
from ...runs.run_dir import RunDir, atomic_write_text
from ..loop import _rng_state, _set_rng_state, resolve_device, seed_everything


class RewardScaler:
    """Scale rewards by the running std of the discounted return (Stable-Baselines3's VecNormalize)."""

    def __init__(self, num_envs: int, gamma: float, clip: float = 10.0):
        self.gamma, self.clip = gamma, clip
        self.ret = np.zeros(num_envs, np.float64)
        self.mean, self.var, self.count = 0.0, 1.0, 1e-4

    def __call__(self, rewards: np.ndarray, dones: np.ndarray) -> np.ndarray:
        self.ret = self.ret * self.gamma + rewards
        b = len(self.ret)
        # one env: the batch mean is its return and the variance 0 (numpy's mean / var cost ~10 us a call)
        b_mean, b_var = (float(self.ret[0]), 0.0) if b == 1 else (float(self.ret.mean()), float(self.ret.var()))
        delta, tot = b_mean - self.mean, self.count + b
        self.mean += delta * b / tot
        self.var = (self.var * self.count + b_var * b + delta ** 2 * self.count * b / tot) / tot
        self.count = tot
        self.ret[dones] = 0.0
        return np.clip(rewards / np.sqrt(self.var + 1e-8), -self.clip, self.clip).astype(np.float32)

    def state_dict(self) -> dict:
        return {"mean": self.mean, "var": self.var, "count": self.count}

    def load_state_dict(self, s: dict) -> None:
        self.mean, self.var, self.count = float(s["mean"]), float(s["var"]), float(s["count"])


class EpisodeLog:
    """Finished episodes since the last log line, and a window of the last 100 for the summary."""

    def __init__(self):
        self.pending: list = []
        self.recent: deque = deque(maxlen=100)
        self.count = 0

    def add(self, episodes: list) -> None:
        self.pending.extend(episodes)
        self.recent.extend(episodes)
        self.count += len(episodes)

    def drain(self) -> dict[str, float]:
        if not self.pending:
            return {}
        eps, self.pending = self.pending, []
        return {"charts/episodic_return": float(np.mean([e.episodic_return for e in eps])),
                "charts/episodic_length": float(np.mean([e.length for e in eps])),
                "charts/success_rate": float(np.mean([e.success for e in eps])),
                "charts/episodes": self.count}

    def mean_return(self) -> float | None:
        return float(np.mean([e.episodic_return for e in self.recent])) if self.recent else None


class RLRun:
    """The run-folder side of an RL trainer: status, metrics, checkpoints, resume and Stop (SIGTERM).

    Without a run folder (``run=None``) it only keeps the history in memory.
    """

    def __init__(self, run: RunDir | str | Path | None, config: Any, total_steps: int, progress: bool = True):
        self.run = RunDir(run) if isinstance(run, (str, Path)) else run
        self.config = config
        self.total = int(total_steps)
        self.stop_requested = False
        self.history: list[dict] = []
        self.bar = None
        self._old_handler = None
        self._t0 = time.perf_counter()
        self._start_step = 0
        if progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, desc="rl", dynamic_ncols=True, file=sys.stderr)

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self, step: int, message: str) -> None:
        self._start_step = step
        if self.bar is not None:
            self.bar.n = step
            self.bar.refresh()
        if self.run is None:
            return
        try:
            self._old_handler = signal.signal(signal.SIGTERM, self._on_sigterm)
        except ValueError:  # not the main thread
            self._old_handler = None
        self.run.write_status("running", phase="train", step=step, total_steps=self.total, eta_s=None, error=None)
        self.run.log(message)

    def _on_sigterm(self, signum, frame) -> None:
        self.stop_requested = True

    @contextlib.contextmanager
    def guard(self, save: Callable[[], Path | None], step: Callable[[], int]) -> Iterator[None]:
        """The training loop's frame: Ctrl-C saves a checkpoint and marks the run stopped, any other error
        marks it failed (both re-raised), and the run closes either way. ``step()`` reads the current step."""
        try:
            yield
        except KeyboardInterrupt:
            self.finish("stopped", step(), save())
            raise
        except BaseException as e:
            self.fail(step(), e)
            raise
        finally:
            self.close()

    def conclude(self, save: Callable[[], Path | None], step: int) -> tuple[str, Path | None]:
        """After the loop: "stopped" if Stop was asked, else "done"; the final checkpoint (an existing one of
        this step is kept); the run's status written. Returns (state, checkpoint)."""
        state = "stopped" if self.stop_requested else "done"
        ckpt = save() if self.run is not None else None
        self.finish(state, step, ckpt)
        return state, ckpt

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.run is not None:
            self.run.close()
            if self._old_handler is not None:
                signal.signal(signal.SIGTERM, self._old_handler)

    # -- metrics -----------------------------------------------------------------------------------
    def log(self, step: int, row: dict[str, float]) -> None:
        row = {k: (float(v) if isinstance(v, (np.floating, torch.Tensor)) else v) for k, v in row.items()}
        self.history.append({"step": step, **row})
        if self.bar is not None:
            self.bar.n = step
            ret = row.get("charts/episodic_return")
            if ret is not None:
                self.bar.set_postfix(ret=f"{ret:.1f}")
            self.bar.refresh()
        if self.run is not None:
            self.run.log_metrics(step, row)
            done = step - self._start_step
            eta = (time.perf_counter() - self._t0) / max(1, done) * (self.total - step)
            self.run.write_status(step=step, total_steps=self.total, eta_s=round(eta, 1))

    # -- checkpoints -------------------------------------------------------------------------------
    def save(self, step: int, policy: torch.nn.Module, optimizers: dict[str, Any], state: dict,
             extras: Callable[[Path], None] | None = None) -> Path | None:
        """Write ``checkpoints/step-<step>/`` atomically (a temporary folder renamed into place)."""
        if self.run is None:
            return None
        def write(tmp: Path) -> None:
            policy.save_pretrained(tmp)
            torch.save({k: (v.state_dict() if hasattr(v, "state_dict") else v) for k, v in optimizers.items()},
                       tmp / "optimizer.pt")
            if extras is not None:
                extras(tmp)
            full = {"step": step, "total_steps": self.total, "rng": _rng_state(), "time": time.time(),
                    "config": self.config.to_dict(), **state}
            atomic_write_text(tmp / "trainer_state.json", json.dumps(full))

        return self.run.write_checkpoint(step, write, self.config.keep_last)

    def resume(self, policy: torch.nn.Module, optimizers: dict[str, Any]) -> tuple[dict | None, Path | None]:
        """Load the run's last checkpoint into ``policy`` / ``optimizers``; (trainer state, folder) or (None, None)."""
        if self.run is None or self.run.last_checkpoint() is None:
            return None, None
        ckpt = self.run.last_checkpoint()
        try:
            state = json.loads((ckpt / "trainer_state.json").read_text())
        except (OSError, json.JSONDecodeError):
            raise CheckpointError(f"checkpoint {ckpt} has a missing or corrupt trainer_state.json; delete {ckpt} "
                                  f"to resume from the previous one") from None
        from ..loop import load_weights

        if hasattr(policy, "load_state_for_resume"):  # the VLA actor (its folder plus its RL heads), MLP policies
            policy.load_state_for_resume(ckpt)
        else:
            load_weights(policy, ckpt / "model.safetensors")
        try:
            opt_state = torch.load(ckpt / "optimizer.pt", map_location="cpu", weights_only=True)
            for k, opt in optimizers.items():
                if hasattr(opt, "load_state_dict"):
                    opt.load_state_dict(_as_flat_adam_state(opt_state[k], opt))
                elif isinstance(opt, torch.Tensor):
                    opt.data.copy_(opt_state[k])
        except (OSError, RuntimeError, KeyError, ValueError, EOFError) as e:
            raise CheckpointError(f"checkpoint {ckpt}/optimizer.pt is corrupt ({type(e).__name__}); delete {ckpt} "
                                  f"to resume from the previous one") from None
        _set_rng_state(state["rng"])
        self.run.prepare_resume(state["step"])
        self.run.log(f"resumed from {ckpt.name} (step {state['step']})")
        return state, ckpt

    def finish(self, state_name: str, step: int, ckpt: Path | None) -> None:
        if self.run is not None:
            self.run.write_status(state_name, step=step, total_steps=self.total, eta_s=0,
                                  checkpoint=str(ckpt) if ckpt else None)
            self.run.log(f"training {state_name} at step {step}")

    def fail(self, step: int, e: BaseException) -> None:
        if self.run is not None and not isinstance(e, KeyboardInterrupt):
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            self.run.write_status("failed", step=step, error=msg)
            self.run.log(f"failed: {msg}")


def _as_flat_adam_state(saved: dict, opt: torch.optim.Optimizer) -> dict:
    """A checkpoint's Adam state for per-tensor parameters, merged for an optimiser over one flat parameter
    (``flatten_parameters``; the tensors in the same order): runs saved before PPO flattened its MLP resume."""
    if not isinstance(opt, torch.optim.Optimizer):  # SAC also restores its target networks this way
        return saved
    groups, mine = saved.get("param_groups", []), opt.param_groups
    if not (len(groups) == len(mine) == 1 and len(mine[0]["params"]) == 1 and len(groups[0]["params"]) > 1):
        return saved
    ids = groups[0]["params"]
    states = [saved["state"].get(i) for i in ids]
    if any(st is None for st in states):  # no step taken yet: nothing to carry over
        return {"state": {}, "param_groups": [{**groups[0], "params": [0]}]}
    merged = {"step": states[0]["step"]}
    for key in ("exp_avg", "exp_avg_sq"):
        merged[key] = torch.cat([st[key].reshape(-1) for st in states])
    return {"state": {0: merged}, "param_groups": [{**groups[0], "params": [0]}]}


def flatten_parameters(params: list[torch.nn.Parameter]) -> torch.nn.Parameter:
    """Make ``params`` views of one contiguous tensor, and their gradients views of one gradient tensor.

    An optimiser over the returned flat parameter, and a gradient-norm clip of its ``.grad``, are one
    kernel each instead of one per weight tensor (PPO's small minibatches pay that overhead per step;
    docs/benchmarks.md has the profile).
    Zero the gradients with ``flat.grad.zero_()`` (``zero_grad(set_to_none=True)`` would detach them from
    the buffer: autograd then allocates new ones). The views share storage, so a checkpoint of the module
    must copy its tensors (``_PolicyBase.save_pretrained`` does)."""
    if len({(p.dtype, p.device) for p in params}) != 1:
        raise ValueError("flatten_parameters needs parameters of one dtype on one device")
    flat = torch.nn.Parameter(torch.cat([p.detach().reshape(-1) for p in params]))
    flat.grad = torch.zeros_like(flat)
    offset = 0
    for p in params:
        n = p.numel()
        p.data = flat.data[offset:offset + n].view_as(p)
        p.grad = flat.grad[offset:offset + n].view_as(p)
        offset += n
    return flat


def setup_torch(config: Any) -> torch.device:
    """Threads, seed and device of a run (RL on small MLPs is fastest on one CPU thread)."""
    torch.set_num_threads(config.num_threads or 1)
    # flush denormal floats to zero on the CPU (as TensorFlow's CPU threads do): Adam's second moments and
    # the small gradients of a converging MLP fall below 1e-38, where x86 arithmetic runs many times
    # slower, and no learning happens at that scale
    torch.set_flush_denormal(True)
    seed_everything(config.seed)
    return resolve_device(config.device)


def linear_lr(optimizer: torch.optim.Optimizer, base_lr: float, frac_left: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = base_lr * max(0.0, frac_left)


def record_video(policy: torch.nn.Module, task: str, run: RunDir | None, step: int, seed: int = 0) -> dict:
    """One deterministic rollout of ``policy`` on ``task`` as ``videos/step-<step>/*.mp4`` (the Training tab's
    rollout every N updates); returns its eval row."""
    if run is None:
        return {}
    from ...eval.evaluator import evaluate_policy

    was_training = policy.training
    ev = evaluate_policy(policy, task, episodes=1, seed_start=1_000_000 + seed, num_videos=1,
                         video_dir=run.videos_dir / f"step-{step}", progress=False)
    policy.train(was_training)
    return {"charts/video_return": ev.summary["eval/mean_return"]}


def rl_task_of(cfg: Any) -> str:
    """The task an RL run config rolls out in: ``eval.task``, else ``dataset.task``."""
    task = cfg.eval.task or cfg.dataset.task
    if not task:
        from ...config.base import ConfigError

        raise ConfigError("eval.task: an RL run needs a task to roll out in; set eval.task (e.g. gym/Hopper-v5 "
                          "or push)")
    return task


def finish_job(trainer: Any, cfg: Any, run: RunDir, result: dict, progress: bool) -> dict:
    """After training: the evaluation of the run config (held-out seeds, videos) into the run folder."""
    from ...eval.evaluator import evaluate_policy

    out = dict(result)
    if result.get("state") == "done" and cfg.eval.after_training:
        run.write_status("running", phase="eval")
        policy = trainer.eval_policy()
        ev = evaluate_policy(policy, rl_task_of(cfg), episodes=cfg.eval.episodes, seed_start=cfg.eval.seed_start,
                             num_videos=cfg.eval.num_videos, video_dir=run.videos_dir,
                             max_episode_steps=cfg.eval.max_episode_steps, progress=progress)
        run.log_metrics(result["step"], ev.summary)
        run.log(ev.format())
        out["eval"] = ev.summary
        run.write_status("done", phase="done", eval=ev.summary)
    return out


class RLJob:
    """``run_job`` for the RL trainers (the background job of ``vla train rl-*``): build the model from the run
    config (or its warm start), train, then evaluate. A trainer whose constructor differs overrides ``for_job``."""

    @classmethod
    def for_job(cls, model: Any, cfg: Any, run: RunDir, progress: bool) -> Any:
        return cls(model, rl_task_of(cfg), cfg.training, run_dir=run, progress=progress)

    @classmethod
    def run_job(cls, cfg: Any, run: Any, progress: bool = True) -> dict:
        from .setup import model_for_job

        trainer = cls.for_job(model_for_job(cfg, run), cfg, run, progress)
        out = trainer.train()
        out.pop("history", None)
        return finish_job(trainer, cfg, run, out, progress)
