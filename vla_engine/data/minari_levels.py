"""Minari datasets of a task at D4RL-style quality levels, from the command line or on demand.

    make_minari_levels("Pendulum-v1", ["random", "expert", "mixed"], expert="scripted", episodes=50,
                       out="datasets/minari")          -> {"random": "vla/pendulum/random-v0", ...}
    ensure_minari_dataset("vla/pendulum/expert-v0", root="datasets/minari", task="gym/Pendulum-v1")

``vla datagen --format minari`` is ``make_minari_levels``: the policies of the levels come from
``--expert`` / ``--medium`` (a checkpoint folder of a state policy, or ``scripted``), the random level
samples the action space, and minari's own ``DataCollector`` writes the datasets (``minari_io``).

``scripted`` is our tabletop tasks' scripted expert, or for the gymnasium tasks that have one here
(``SCRIPTED``) a hand-written controller: Pendulum-v1's energy-pumping swing-up with a PD catch at the top
(mean return about -130 against about -1150 for random torques), and its ``medium`` level, the same
controller acting only half of the time (random torques otherwise), as in ``benchmarks/bench_il.py``.

``ensure_minari_dataset`` is what a training run does when its dataset is missing: a level that can be
made offline (random, or a scripted expert's levels) is collected; any other stops with one line that
gives the exact ``vla datagen`` command that makes it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .bc_datasets import _data_dir, minari_root
from .lerobot_io import DatasetError

Policy = Callable[[Any], Any]
LEVEL_NAMES = ("random", "medium", "expert", "mixed")


# ------------------------------------------------------------------------------------------------
# Scripted policies of gymnasium tasks.
# ------------------------------------------------------------------------------------------------
def pendulum_swing_up(obs: Any) -> np.ndarray:
    """Pendulum-v1: pump energy towards the upright rest, blended smoothly into a PD catch near the top
    (smooth, so an MLP can clone it). obs = (cos theta, sin theta, theta dot); torque in [-2, 2]."""
    c, s, w = (float(x) for x in np.asarray(obs, dtype=np.float64).reshape(-1)[:3])
    pd = -(12.0 * np.arctan2(s, c) + 2.5 * w)  # hold upright
    energy = 0.5 * w * w + 15.0 * c  # 15 at the upright rest
    pump = 2.0 * np.tanh(2.0 * w) * np.tanh((15.0 - energy) / 2.0)
    near_top = 1.0 / (1.0 + np.exp(-40.0 * (c - 0.85)))
    return np.array([np.clip(near_top * pd + (1 - near_top) * pump, -2.0, 2.0)], dtype=np.float32)


class HalfExpert:
    """A medium policy: ``expert`` with probability ``p``, a uniform random action otherwise (seeded)."""

    def __init__(self, expert: Policy, low: float, high: float, dim: int, p: float = 0.5, seed: int = 0):
        self.expert, self.low, self.high, self.dim, self.p = expert, low, high, dim, p
        self.rng = np.random.default_rng(seed)

    def __call__(self, obs: Any) -> np.ndarray:
        if self.rng.random() < self.p:
            return self.expert(obs)
        return self.rng.uniform(self.low, self.high, self.dim).astype(np.float32)


# gymnasium id -> level -> a function (seed) -> policy
SCRIPTED: dict[str, dict[str, Callable[[int], Policy]]] = {
    "Pendulum-v1": {
        "expert": lambda seed: pendulum_swing_up,
        "medium": lambda seed: HalfExpert(pendulum_swing_up, -2.0, 2.0, 1, 0.5, seed),
    },
}


def env_id_of(task: str) -> str:
    """What minari collects from: ``gym/Hopper-v5`` -> ``Hopper-v5``; our task names and gym ids pass through."""
    return task[len("gym/"):] if task.startswith("gym/") else task


def _has_tabletop_expert(env: str) -> bool:
    import vla_engine.envs  # noqa: F401  (registers the tasks)
    from ..registry import TASKS

    if env not in TASKS:
        return False
    meta = TASKS.meta(env)
    return meta.get("family") != "gym" and meta.get("has_expert") is not False


def scripted_policy(env: str, level: str, seed: int = 0) -> Policy | None:
    """The scripted policy of ``level`` (expert | medium) for ``env``, or None when there is none."""
    if env in SCRIPTED and level in SCRIPTED[env]:
        return SCRIPTED[env][level](seed)
    if level == "expert" and _has_tabletop_expert(env):
        from .minari_io import load_policy

        return load_policy("scripted")
    return None


def resolve_policy(env: str, level: str, ref: str | None, seed: int = 0) -> Policy | None:
    """``--expert`` / ``--medium``: None, ``scripted`` or a checkpoint folder -> a policy (obs -> action)."""
    if not ref:
        return None
    if ref == "scripted":
        pol = scripted_policy(env, level, seed)
        if pol is None:
            have = [e for e, lv in SCRIPTED.items() if level in lv]
            raise DatasetError(f"--{level} scripted: there is no scripted {level} policy for {env} (scripted ones: "
                               f"{', '.join(have)}{' and our tabletop tasks' if level == 'expert' else ''}); "
                               f"pass a checkpoint folder of a state policy (e.g. a PPO run's checkpoints/step-N)")
        return pol
    from .minari_io import load_policy

    return load_policy(ref)


# ------------------------------------------------------------------------------------------------
# The datasets of the levels.
# ------------------------------------------------------------------------------------------------
def make_minari_levels(task: str, levels: Sequence[str] = LEVEL_NAMES, *, expert: str | None = None,
                       medium: str | None = None, episodes: int = 50, out: str | Path = "datasets/minari",
                       seed: int = 0, overwrite: bool = False, namespace: str = "vla",
                       progress: bool = True) -> dict[str, str | None]:
    """The ``-random`` / ``-medium`` / ``-expert`` / ``-mixed`` Minari datasets of ``task`` under ``out``:
    level -> dataset id, or None for a level skipped because no policy was given for it.

    The mixed set is made only from two levels or more (random alone would be the random set again)."""
    from .minari_io import make_level_datasets

    levels = tuple(dict.fromkeys(s.strip() for s in levels if s.strip()))
    bad = [lv for lv in levels if lv not in LEVEL_NAMES]
    if bad or not levels:
        raise DatasetError(f"--levels: {', '.join(bad) or 'none given'}; choose from: {', '.join(LEVEL_NAMES)}")
    if episodes < 1:
        raise DatasetError(f"--episodes must be >= 1; got {episodes}")
    env = env_id_of(task)
    policies = {lv: p for lv, p in (("expert", resolve_policy(env, "expert", expert, seed)),
                                    ("medium", resolve_policy(env, "medium", medium, seed + 1))) if p is not None}
    make = tuple(lv for lv in levels if lv == "random" or lv in policies or (lv == "mixed" and policies))
    ids: dict[str, str | None] = {lv: None for lv in levels}
    if make:
        ids.update(make_level_datasets(env, policies, episodes, root=out, namespace=namespace, levels=make,
                                       seed=seed, overwrite=overwrite, progress=progress))
    return ids


def _parse_id(ref: str) -> tuple[str, str, str] | None:
    """``vla/pendulum/expert-v0`` -> ("vla", "pendulum", "expert"); None if not that shape."""
    parts = str(ref).split("/")
    if len(parts) != 3 or "-v" not in parts[2]:
        return None
    level = parts[2].rsplit("-v", 1)[0]
    return parts[0], parts[1], level


def datagen_command(task: str, level: str, episodes: int, root: str | Path) -> str:
    """The ``vla datagen`` line that makes ``level`` of ``task`` (checkpoints named where they are needed)."""
    env = env_id_of(task)
    levels = "random" if level == "random" else f"random,{level}" if level != "mixed" else "random,medium,expert,mixed"
    flags = ""
    for lv in ("medium", "expert"):
        if lv in levels or (lv == "expert" and scripted_policy(env, lv) is not None):  # the expert: reference scores
            flags += f" --{lv} {'scripted' if scripted_policy(env, lv) is not None else '<checkpoint folder>'}"
    return f"vla datagen --format minari --task {env} --levels {levels}{flags} --episodes {episodes} --out {root}"


def ensure_minari_dataset(ref: str, root: str | Path | None = None, task: str | Sequence[str | None] | None = None,
                          episodes: int = 50, seed: int = 0, log: Callable[[str], None] | None = None) -> None:
    """Make the Minari dataset ``ref`` if it is missing and can be made offline; else one line with the command.

    ``ref`` is found as a folder or as an id under ``root`` (``bc_datasets``' lookup). A missing id of the
    form ``<namespace>/<env>/<level>-v0`` whose env is ``task``'s is collected when every policy it needs
    is scripted (the random level always is). ``task`` may list candidates (a run's dataset.task and
    eval.task): the first whose env the id names is used."""
    try:
        _data_dir(ref, root)
        return
    except DatasetError:
        pass
    from .minari_io import env_short_name

    where = minari_root(root)
    parsed = _parse_id(ref)
    tasks = [t for t in ([task] if isinstance(task, str) or task is None else task) if t]
    named = [t for t in tasks if parsed is not None and env_short_name(env_id_of(t)) == parsed[1]]
    env = env_id_of((named or tasks)[0]) if tasks else None
    if parsed is None or env is None:
        raise DatasetError(f"no Minari dataset '{ref}' (looked for a folder with data/metadata.json and for the id "
                           f"under {where}); give dataset.minari_id as namespace/env/level-v0 with dataset.task "
                           f"set, or make it with: vla datagen --format minari --task <gym id> --out {where}")
    namespace, name, level = parsed
    command = datagen_command(env, level if level in LEVEL_NAMES else "expert", episodes, where)
    if name != env_short_name(env) or level not in LEVEL_NAMES:
        raise DatasetError(f"no Minari dataset '{ref}' under {where}, and it is not a level of {env} "
                           f"({namespace}/{env_short_name(env)}/<{'|'.join(LEVEL_NAMES)}>-v0); make it with: {command}")
    needs = {"random": [], "medium": ["medium"], "expert": ["expert"], "mixed": ["medium", "expert"]}[level]
    # a scripted expert also gives the reference scores (random = 0, expert = 100); a random set without
    # one is still made, without reference scores
    policies = {lv: scripted_policy(env, lv, seed) for lv in ("medium", "expert")}
    missing = [lv for lv in needs if policies[lv] is None]
    if missing:
        raise DatasetError(f"Minari dataset '{ref}' is not under {where} and its {' and '.join(sorted(missing))} "
                           f"policy is not scripted; make it with: {command}")
    if log is not None:
        log(f"Minari dataset {ref} not found under {where}: collecting {episodes} episodes ({command})")
    from .minari_io import make_level_datasets

    make_level_datasets(env, {k: v for k, v in policies.items() if v is not None}, episodes, root=where,
                        namespace=namespace, levels=(level,), seed=seed)
