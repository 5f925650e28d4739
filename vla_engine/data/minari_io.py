"""Make Minari datasets locally with minari's own ``DataCollector`` (D4RL-style quality levels).

    collect_minari("Hopper-v5", policy, "vla/hopper/expert-v0", episodes=50, root="datasets/minari")
    make_level_datasets("Hopper-v5", {"expert": expert, "medium": medium}, episodes=50, root=...)
        -> vla/hopper/random-v0, vla/hopper/medium-v0, vla/hopper/expert-v0, vla/hopper/mixed-v0

``env`` is a gymnasium id (the MuJoCo tasks: ``Hopper-v5``, ``HalfCheetah-v5``, ...) or one of our
tasks (``push``: dictionary observations with the camera image and the state, the scripted expert).
A policy is any callable ``observation -> action``. ``random`` samples the action space. The mixed set
draws an equal share of its episodes from every level given.

Reference scores for the D4RL-style normalised score: ``ref_min_score`` is the random policy's mean
return and ``ref_max_score`` the expert's, both measured on the episodes collected here (or given),
and written into every level's metadata so ``minari.get_normalized_score`` works too.

Command line (a reduced default; the random level needs no policy):

    python -m vla_engine.data.minari_io --env Hopper-v5 --levels random --episodes 20 --root datasets/minari
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from .bc_datasets import minari_root
from .lerobot_io import DatasetError

Policy = Callable[[Any], Any]
LEVELS = ("random", "medium", "expert", "mixed")


def run_episode(env: Any, act: Any, seed: int) -> float:
    """One episode of ``act`` (obs -> action) in ``env`` from ``reset(seed=seed)``; its undiscounted return."""
    obs, _ = env.reset(seed=seed)
    done, ret = False, 0.0
    while not done:
        obs, r, term, trunc, _ = env.step(np.asarray(act(obs), dtype=np.float32))
        ret += float(r)
        done = term or trunc
    return ret


@contextlib.contextmanager
def _datasets_path(root: str | Path | None) -> Iterator[Path]:
    """minari reads its root from MINARI_DATASETS_PATH at call time; point it at ``root`` meanwhile."""
    path = minari_root(root).resolve()
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(path)
    try:
        yield path
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


def env_short_name(env: str) -> str:
    """``Hopper-v5`` -> ``hopper``; ``push`` -> ``push``; ``metaworld/reach-v3`` -> ``metaworld-reach``."""
    base = env.rsplit("-v", 1)[0] if "-v" in env else env
    return base.replace("/", "-").lower()


def make_collect_env(env: str, **kw: Any):
    """A gymnasium env with a spec (minari records it): a gymnasium id, or one of our tasks by name."""
    import gymnasium

    from ..registry import TASKS
    import vla_engine.envs  # noqa: F401  (registers our tasks and their gymnasium ids)

    if env in TASKS:
        gym_id = TASKS.meta(env).get("gym_id")
        if gym_id and gym_id in gymnasium.registry:
            return gymnasium.make(gym_id, **kw)
        from ..envs import make_env

        return make_env(env, **kw)
    try:
        return gymnasium.make(env, **kw)
    except gymnasium.error.Error as e:
        raise DatasetError(f"cannot build environment '{env}' ({e}); give a gymnasium id such as Hopper-v5 "
                           f"or one of our tasks ({', '.join(TASKS.names())})") from None


def random_policy(env, seed: int = 0) -> Policy:
    space = env.action_space
    space.seed(seed)
    return lambda obs: space.sample()


def collect_minari(env: str, policy: Policy | Mapping[str, Policy] | list[Policy], dataset_id: str, episodes: int,
                   *, root: str | Path | None = None, seed: int = 0, ref_min_score: float | None = None,
                   ref_max_score: float | None = None, algorithm_name: str = "scripted",
                   description: str | None = None, overwrite: bool = False,
                   env_kwargs: Mapping[str, Any] | None = None, progress: bool = False,
                   on_episode: Callable[[int, int, float], None] | None = None):
    """Roll ``episodes`` episodes of ``policy`` through a DataCollector and save them as ``dataset_id``.

    ``policy`` may be a list (episode i uses policy i % len): the mixed level. A policy that needs the
    env (our scripted experts) is built per episode by ``policy.for_env(env)`` if it has that method.
    Returns minari's ``MinariDataset``.
    """
    from minari import DataCollector

    from minari.dataset.minari_dataset import parse_dataset_id

    if episodes < 1:
        raise DatasetError(f"episodes must be >= 1; got {episodes}")
    try:
        parse_dataset_id(dataset_id)
    except ValueError:
        raise DatasetError(f"dataset id {dataset_id!r} is not a Minari id; write it as namespace/name-v0 "
                           f"(e.g. vla/hopper/expert-v0)") from None
    policies = list(policy.values()) if isinstance(policy, Mapping) else policy if isinstance(policy, list) else [policy]
    with _datasets_path(root) as path:
        target = path / dataset_id
        if target.exists():
            if not overwrite:
                raise DatasetError(f"Minari dataset {dataset_id} already exists under {path}; pass overwrite=True "
                                   f"(--overwrite) or choose another id")
            shutil.rmtree(target)
        base = make_collect_env(env, **dict(env_kwargs or {}))
        collector = DataCollector(base, record_infos=False)
        returns = []
        it = range(episodes)
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(it, desc=f"collect {dataset_id}", dynamic_ncols=True)
        try:
            for i in it:
                pol = policies[i % len(policies)]
                act = pol.for_env(base) if hasattr(pol, "for_env") else pol
                ret = run_episode(collector, act, seed + i)
                returns.append(ret)
                if on_episode is not None:
                    on_episode(i, episodes, ret)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # minari warns about unset author/permalink fields
                ds = collector.create_dataset(
                    dataset_id=dataset_id, eval_env=base.spec if base.spec is not None else None,
                    algorithm_name=algorithm_name, author="vla_engine", author_email="n/a",
                    code_permalink="vla_engine.data.minari_io",
                    description=description or f"{episodes} episodes of {env} ({algorithm_name})",
                )
        finally:
            collector.close()
        if ref_min_score is not None and ref_max_score is not None:
            set_reference_scores(dataset_id, ref_min_score, ref_max_score, root=path)
            ds = type(ds)(path / dataset_id / "data")
    ds.collected_returns = np.asarray(returns)
    return ds


def make_level_datasets(env: str, policies: Mapping[str, Policy] | None = None, episodes: int = 50, *,
                        root: str | Path | None = None, namespace: str = "vla", levels: tuple[str, ...] = LEVELS,
                        seed: int = 0, overwrite: bool = False, progress: bool = False,
                        env_kwargs: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The ``-random``, ``-medium``, ``-expert`` and ``-mixed`` datasets of ``env``: level -> dataset id.

    ``policies`` names the medium and expert policies; a level without one is skipped (said in the
    returned map as ``None``). The random and expert mean returns become the reference scores.
    """
    policies = dict(policies or {})
    name = env_short_name(env)
    bad = [lv for lv in levels if lv not in LEVELS]
    if bad:
        raise DatasetError(f"unknown level(s) {', '.join(bad)}; choose from: {', '.join(LEVELS)}")
    probe = make_collect_env(env, **dict(env_kwargs or {}))
    policies.setdefault("random", random_policy(probe, seed))
    probe.close()
    ids: dict[str, str | None] = {}
    means: dict[str, float] = {}
    for level in (lv for lv in LEVELS if lv in levels):
        pols = ([policies[lv] for lv in ("random", "medium", "expert") if lv in policies] if level == "mixed"
                else [policies[level]] if level in policies else [])
        if not pols:
            ids[level] = None
            continue
        did = f"{namespace}/{name}/{level}-v0"
        ds = collect_minari(env, pols, did, episodes, root=root, seed=seed + 1000 * LEVELS.index(level),
                            algorithm_name=f"{level} policy", overwrite=overwrite, progress=progress,
                            env_kwargs=env_kwargs)
        means[level] = float(np.mean(ds.collected_returns))
        ids[level] = did
    # the reference returns (random = 0, expert = 100): measured here when their level was not collected
    for level in ("random", "expert"):
        if level not in means and level in policies:
            means[level] = _mean_return(env, policies[level], max(5, episodes // 5), seed + 10_000, env_kwargs)
    if "random" in means and "expert" in means:
        for did in (d for d in ids.values() if d):
            set_reference_scores(did, means["random"], means["expert"], root=root)
    return ids


def _mean_return(env: str, policy: Policy, episodes: int, seed: int, env_kwargs: Mapping[str, Any] | None) -> float:
    return float(np.mean(rollout_returns(env, policy, episodes, seed=seed, env_kwargs=env_kwargs)))


def rollout_returns(env: str, policy: Policy, episodes: int, *, seed: int = 0,
                    env_kwargs: Mapping[str, Any] | None = None) -> np.ndarray:
    """The returns of ``episodes`` episodes of ``policy`` (``obs -> action``) in ``env``, seeds seed, seed+1, ..."""
    e = make_collect_env(env, **dict(env_kwargs or {}))
    act = policy.for_env(e) if hasattr(policy, "for_env") else policy
    rets = []
    try:
        for i in range(episodes):
            rets.append(run_episode(e, act, seed + i))
    finally:
        e.close()
    return np.asarray(rets)


def set_reference_scores(dataset_id: str, ref_min: float, ref_max: float, root: str | Path | None = None) -> None:
    """Write ``ref_min_score`` / ``ref_max_score`` into a dataset's ``data/metadata.json`` (minari's field names)."""
    import json

    meta_path = minari_root(root) / dataset_id / "data" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta.update(ref_min_score=float(ref_min), ref_max_score=float(ref_max))
    tmp = meta_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta))
    tmp.replace(meta_path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vla_engine.data.minari_io",
                                description="Make Minari datasets (-random/-medium/-expert/-mixed) of a task.")
    p.add_argument("--env", required=True, help="gymnasium id (Hopper-v5) or one of our tasks (push)")
    p.add_argument("--levels", default="random", help="comma list of: " + ", ".join(LEVELS))
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--root", default="datasets/minari")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--expert", default=None,
                   help="'scripted' (our tasks' scripted expert) or a checkpoint folder of a state policy")
    p.add_argument("--medium", default=None, help="a checkpoint folder of a state policy (the medium level)")
    a = p.parse_args(argv)
    levels = tuple(s.strip() for s in a.levels.split(",") if s.strip())
    policies: dict[str, Policy] = {}
    for level, ref in (("expert", a.expert), ("medium", a.medium)):
        if ref:
            policies[level] = load_policy(ref)
    try:
        ids = make_level_datasets(a.env, policies, a.episodes, root=a.root, levels=levels, seed=a.seed,
                                  overwrite=a.overwrite, progress=True)
    except DatasetError as e:
        print(f"error: {e}")
        return 2
    for level, did in ids.items():
        print(f"{level}: {did or 'skipped (no policy given; pass --' + level + ')'}")
    return 0


class _ScriptedExpert:
    """Our tasks' scripted expert, rebuilt for the env it acts in (it reads the env's state)."""

    def for_env(self, env):
        from ..envs import make_expert

        return make_expert(env.unwrapped)


def load_policy(ref: str) -> Policy:
    """``scripted``, or a saved state policy (an RL MLP checkpoint of PPO / SAC, or a ``StateMLPPolicy``
    folder) as ``obs -> action`` (its mean action; an RL policy's clipped to its action bounds)."""
    if ref == "scripted":
        return _ScriptedExpert()
    from ..train.il.policies import StateMLPPolicy

    if not (Path(ref) / "model.safetensors").exists():
        raise DatasetError(f"{ref} is not a policy checkpoint folder (no model.safetensors); train one first")
    import json

    from ..train.rl.policies import is_rl_policy_config, load_rl_policy

    if is_rl_policy_config(json.loads((Path(ref) / "config.json").read_text())):  # a PPO / SAC expert
        rl = load_rl_policy(ref).eval()
        low, high = rl.action_low.cpu().numpy(), rl.action_high.cpu().numpy()
        # PPO's Gaussian mean is unbounded: record the action the env executes (the trainers clip it the same
        # way), so the data stays inside the action space and a learner's clipped actions look like the expert's
        return lambda obs: np.clip(rl.select_action(np.asarray(obs, dtype=np.float32)[None])[0].detach().cpu().numpy(),
                                   low, high)
    return StateMLPPolicy.from_pretrained(ref).as_callable()


if __name__ == "__main__":
    raise SystemExit(main())
