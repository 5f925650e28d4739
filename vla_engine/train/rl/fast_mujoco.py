"""Exact fast steps for gymnasium's MuJoCo forward-locomotion envs (Hopper-v5, Walker2d-v5, HalfCheetah-v5).

Why: one Hopper control step is four ``mj_step`` calls, ~0.11 ms of C on these cores, and gymnasium's
``step`` around them adds ~40 us of Python (the action shape check, ``is_healthy`` computed twice, each
building ``state_vector()``, the info dict of reward components). The kernel here does the same
arithmetic in the same order straight on ``model``/``data``, so observation, reward and termination are
bit-identical (``tests/test_rl_fast_mujoco.py`` steps both side by side), and drops only the info dict, which
the runner never reads for these envs. It takes every setting (reward weights, healthy ranges, frame skip,
the excluded x position) from the env instance, so gymnasium stays their only owner.

``fast_step_for(env)`` returns the kernel of a bare (unwrapped) env, or None where there is none: another
env, a subclass, a rendering env, or an env whose observation keeps the x position.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

FastStep = Callable[[np.ndarray], tuple[np.ndarray, float, bool]]  # action -> (observation, reward, terminated)


def _kernel(env, health: str, clip_velocity: bool) -> FastStep:
    """The step of a forward-locomotion env: ``health`` is how its is_healthy reads (hopper, walker, none)."""
    import mujoco

    m, d, skip = env.model, env.data, env.frame_skip
    qpos, qvel, ctrl = d.qpos, d.qvel, d.ctrl  # views into MjData: always current
    dt = env.dt
    fw, cw = env._forward_reward_weight, env._ctrl_cost_weight
    if health != "none":
        hr, terminate = env._healthy_reward, env._terminate_when_unhealthy
        (zmin, zmax), (amin, amax) = env._healthy_z_range, env._healthy_angle_range
    if health == "hopper":
        smin, smax = env._healthy_state_range

    def step(action: np.ndarray) -> tuple[np.ndarray, float, bool]:
        x_before = qpos[0]
        ctrl[:] = action
        mujoco.mj_step(m, d, nstep=skip)
        mujoco.mj_rnePostConstraint(m, d)  # as gymnasium does (cacc, cfrc_*): the same MjData afterwards
        x_velocity = (qpos[0] - x_before) / dt
        velocity = np.clip(qvel, -10, 10) if clip_velocity else qvel
        obs = np.concatenate((qpos[1:], velocity))
        ctrl_cost = cw * np.sum(np.square(action))
        if health == "none":  # HalfCheetah: never ends, no survival reward
            return obs, fw * x_velocity - ctrl_cost, False
        z, angle = qpos[1], qpos[2]
        healthy = zmin < z < zmax and amin < angle < amax
        if health == "hopper" and healthy:  # Hopper also bounds every joint position and velocity
            healthy = bool(np.all(np.logical_and(smin < qpos[2:], qpos[2:] < smax))
                           and np.all(np.logical_and(smin < qvel, qvel < smax)))
        reward = fw * x_velocity + healthy * hr - ctrl_cost
        return obs, reward, (not healthy) and terminate

    return step


def fast_step_for(env) -> FastStep | None:
    """The exact fast step of the bare gymnasium env ``env``, or None when it has none."""
    from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv
    from gymnasium.envs.mujoco.hopper_v5 import HopperEnv
    from gymnasium.envs.mujoco.walker2d_v5 import Walker2dEnv

    kinds = {HopperEnv: ("hopper", True), Walker2dEnv: ("walker", True), HalfCheetahEnv: ("none", False)}
    kind = kinds.get(type(env))  # the exact class: a subclass may change step
    if kind is None or env.render_mode is not None or not env._exclude_current_positions_from_observation:
        return None
    return _kernel(env, *kind)
