"""The driving world: a MuJoCo town with lanes, junctions and traffic; the ego car with a front camera, a lidar
ray ring, a radar and an IMU; tasks with instructions and a scripted expert.

Importing this package is light (numpy and gymnasium, no MuJoCo): it registers the tasks ``driving/turn``,
``driving/follow``, ``driving/stop-behind``, ``driving/queue``, ``driving/queue-fog`` and ``driving/convoy-fog``
(the last two with the camera in fog)
in ``vla_engine.registry.TASKS`` (the entry builds the env, its meta is ``task_info``) and the gymnasium ids
``vla_engine/DrivingTurn-v0``, ... MuJoCo loads when an env is first built.

    >>> from vla_engine.envs import make_env, make_expert
    >>> env = make_env("driving/turn", image_size=96)
    >>> obs, info = env.reset(seed=0)          # obs: pixels, agent_pos, lidar(+mask), radar(+mask), imu
    >>> info["instruction"]                    # e.g. "take the next left"
    >>> obs, r, term, trunc, info = env.step(make_expert(env).act())

Parts: ``roads.py`` (road network, paths), ``tasks.py`` (scenarios, instructions), ``world.py`` (MuJoCo
scene, cameras, lidar), ``sensors.py`` (radar, IMU), ``env.py`` (``DrivingEnv``), ``expert.py``
(``DrivingExpert``), ``metrics.py`` (route completion, collisions per km, ADE/FDE), ``corruption.py``
(``SensorNoise``: Gaussian noise on one sensor at test time; ``evaluate_corrupted``: route completion and gate
weights with it).
"""

from __future__ import annotations

from typing import Any

import gymnasium

from vla_engine.registry import TASKS

from .tasks import DRIVING_TASKS, DrivingTask

for _task in DRIVING_TASKS:
    if _task.name not in TASKS:
        TASKS.register(_task.name, _task, **_task.meta())
    if _task.gym_id not in gymnasium.registry:
        gymnasium.register(id=_task.gym_id, entry_point="vla_engine.envs.driving:_make_gym",
                           max_episode_steps=_task.max_episode_steps, kwargs={"task": _task.name})


def _make_gym(task: str, **kw: Any) -> Any:
    """gymnasium entry point: the env of ``task``."""
    return TASKS.get(task)(**kw)


_LAZY = {"DrivingEnv": ".env", "DrivingExpert": ".expert", "RoadNetwork": ".roads", "Path": ".roads",
         "driving_metrics": ".metrics", "ade_fde": ".metrics", "collisions_per_km": ".metrics"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DRIVING_TASKS", "DrivingTask", *_LAZY]
