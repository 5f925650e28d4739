"""The built-in MuJoCo tabletop task suite: ``reach``, ``push``, ``pick-place``.

Importing this package is light (numpy and gymnasium only, no MuJoCo): it registers each task
in ``vla_engine.registry.TASKS`` (the entry is the task definition from ``tasks.py``, its meta
the numbers below) and the gymnasium ids ``vla_engine/Reach-v0``, ``vla_engine/Push-v0`` and
``vla_engine/PickPlace-v0``. MuJoCo is imported when an environment is first built.

    >>> from vla_engine.envs import make_env, make_expert, task_info
    >>> env = make_env("push", image_size=96)
    >>> obs, info = env.reset(seed=0)
    >>> # obs: {"pixels": (96, 96, 3) uint8, "agent_pos": (2,) float32}
    >>> info["instruction"]             # e.g. "push the blue block into the left zone"
    >>> expert = make_expert(env)
    >>> obs, reward, terminated, truncated, info = env.step(expert(obs))

``task_info(task)`` gives ``action_dim``, ``state_dim``, ``fps``, ``max_episode_steps``,
``description``, ``gym_id``, ``camera_names``, ``state_names``, ``action_names`` and
``example_instruction``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

# Headless MuJoCo rendering: EGL unless the user chose a backend or a display is there. This is the
# one place that sets it; it must happen before anything imports mujoco (the backend is read once at
# import), and every path to an environment comes through this package.
if "MUJOCO_GL" not in os.environ and sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
    os.environ["MUJOCO_GL"] = "egl"

import gymnasium  # noqa: E402

from vla_engine.registry import TASKS

from .tasks import ALL_TASKS, BLOCK_COLORS, ZONE_NAMES, TabletopTask

_ENV_CLASS = {"reach": "ReachEnv", "push": "PushEnv", "pick-place": "PickPlaceEnv"}

for _task in ALL_TASKS:
    if _task.name not in TASKS:
        TASKS.register(_task.name, _task, **_task.meta())
    if _task.gym_id not in gymnasium.registry:
        gymnasium.register(
            id=_task.gym_id,
            entry_point=f"vla_engine.envs.tabletop:{_ENV_CLASS[_task.name]}",
            max_episode_steps=_task.max_episode_steps,
        )


# Task families beyond the tabletop suite (gymnasium ids, Meta-World, the driving world) register
# themselves in TASKS when their module is imported; each module is light (no MuJoCo at import).
# A family is its own module plus its name here.
TASK_FAMILIES = ("vla_engine.envs.gym_tasks", "vla_engine.envs.metaworld_tasks", "vla_engine.envs.driving",
                 "vla_engine.envs.pusht", "vla_engine.envs.aloha", "vla_engine.envs.xarm")


def _register_families() -> None:
    import importlib
    import importlib.util

    for module in TASK_FAMILIES:
        try:
            present = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            present = False
        if present:
            importlib.import_module(module)


_register_families()


def task_info(task: str) -> dict[str, Any]:
    """Metadata of a registered task (raises the registry's one-line error for unknown names)."""
    return dict(TASKS.meta(task))


def make_env(
    task: str,
    image_size: int = 96,
    render_mode: str | None = "rgb_array",
    max_episode_steps: int | None = None,
    **kw: Any,
) -> gymnasium.Env:
    """Build the environment of ``task`` (a name in ``TASKS``).

    ``kw`` goes to :class:`vla_engine.envs.tabletop.TabletopEnv`: ``render_images=False`` skips
    rendering (all-zero pixels), ``substeps`` overrides the physics steps per control step.
    ``max_episode_steps`` replaces the task's time limit (the env truncates itself; no wrapper).
    Through ``gymnasium.make`` the registered limit is the task's; ``gymnasium.make(id,
    max_episode_steps=k)`` adds a TimeLimit wrapper, which can only shorten episodes, so build
    longer ones with ``make_env``.
    """
    spec = TASKS.get(task)  # unknown name -> one-line error listing the choices
    if not isinstance(spec, TabletopTask):  # a task another module registered: its own builder
        return spec(
            image_size=image_size,
            render_mode=render_mode,
            max_episode_steps=max_episode_steps,
            **kw,
        )
    from .tabletop import TabletopEnv

    return TabletopEnv(
        task=spec,
        image_size=image_size,
        render_mode=render_mode,
        max_episode_steps=max_episode_steps,
        **kw,
    )


def make_expert(env: gymnasium.Env) -> Any:
    """The scripted expert of ``env``'s task (see ``experts.py``)."""
    from .experts import make_expert as _make_expert

    return _make_expert(env)


_LAZY = {
    "TabletopEnv": "tabletop",
    "ReachEnv": "tabletop",
    "PushEnv": "tabletop",
    "PickPlaceEnv": "tabletop",
    "build_scene_xml": "tabletop",
    "ScriptedExpert": "experts",
}


def __getattr__(name: str) -> Any:
    """The env classes and experts, imported (with MuJoCo) on first use."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BLOCK_COLORS",
    "ZONE_NAMES",
    "TabletopTask",
    "make_env",
    "make_expert",
    "task_info",
    *_LAZY,
]
