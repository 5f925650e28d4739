"""The driving world: tasks register lightly, the env is deterministic by seed, every sensor sees what is
there, collisions end an episode, the scripted expert succeeds on each task, metrics and waypoint labels."""

from __future__ import annotations

import numpy as np
import pytest

from vla_engine.envs import make_env, make_expert, task_info
from vla_engine.envs.driving import DRIVING_TASKS
from vla_engine.envs.driving.labels import to_ego_frame, waypoints_from_poses
from vla_engine.envs.driving.metrics import ade_fde, driving_metrics

TASKS = [t.name for t in DRIVING_TASKS]


def _run(env, expert, seed):
    obs, info = env.reset(seed=seed)
    for _ in range(env.unwrapped.max_episode_steps):
        obs, r, term, trunc, info = env.step(expert.act())
        if term or trunc:
            break
    return info


def test_tasks_register_with_sensor_meta():
    for name in TASKS:
        meta = task_info(name)
        assert meta["action_dim"] == 3 and meta["family"] == "driving"
        assert set(meta["sensors"]) == {"lidar", "radar", "imu"}
        assert meta["sensors"]["imu"]["rate_hz"] > meta["fps"]  # the IMU runs faster than the camera
        assert set(meta["sensor_obs"].values()) <= set(meta["extra_features"])


def test_env_is_deterministic_by_seed():
    a, b = make_env("driving/turn", image_size=32), make_env("driving/turn", image_size=32)
    oa, ia = a.reset(seed=3)
    ob, ib = b.reset(seed=3)
    assert ia["instruction"] == ib["instruction"]
    ea, eb = make_expert(a), make_expert(b)
    for _ in range(15):
        oa, *_ = a.step(ea.act())
        ob, *_ = b.step(eb.act())
    for k in oa:
        np.testing.assert_array_equal(oa[k], ob[k], err_msg=k)
    oc, ic = a.reset(seed=4)
    assert not np.array_equal(oc["pose"], oa["pose"]) or ic["instruction"] != ia["instruction"]


def test_sensors_see_the_parked_car_ahead():
    env = make_env("driving/stop-behind", image_size=64)
    obs, info = env.reset(seed=1)
    u = env.unwrapped
    assert obs["pixels"].shape == (64, 64, 3) and obs["pixels"].std() > 5  # a rendered scene, not a blank
    target = u.vehicles[u.scenario.target].pose
    rel = to_ego_frame(target[:2], u.ego)
    dist = float(np.hypot(*rel))
    # radar: one target at about the parked car's range and bearing
    radar, mask = obs["radar"], obs["radar_mask"].astype(bool)
    assert mask.any()
    near = np.abs(radar[mask, 0] - dist) < 3.0
    assert near.any(), (radar[mask], dist)
    # lidar: points hit the car's back (x near it, within the lane) in the ego frame (64 azimuths: sparse at 30 m)
    pts, hit = obs["lidar"], obs["lidar_mask"].astype(bool)
    assert pts.shape == (64 * 16, 4) and hit.sum() > 50
    on_car = hit & (np.abs(pts[:, 0] - (rel[0] - 2.25)) < 1.0) & (np.abs(pts[:, 1] - rel[1]) < 1.2) & (pts[:, 2] > 0.2)
    assert on_car.sum() >= 1
    # IMU: several samples per control step, gravity on z
    assert obs["imu"].shape[0] > 1 and np.allclose(obs["imu"][:, 2], 9.81, atol=0.5)


def test_collision_ends_the_episode():
    env = make_env("driving/stop-behind", image_size=32, render_images=False)
    env.reset(seed=2)
    info = {}
    for _ in range(150):  # full throttle into the parked car
        _, r, term, trunc, info = env.step(np.array([0.0, 1.0, 0.0], np.float32))
        if term or trunc:
            break
    assert info["collision"] and not info["is_success"] and r < 0
    assert driving_metrics([info])["collisions_per_km"] > 0


@pytest.mark.parametrize("task", TASKS)
def test_expert_succeeds(task):
    env = make_env(task, image_size=32, render_images=False)
    expert = make_expert(env)
    results = [_run(env, expert, seed) for seed in (0, 1, 2)]
    assert all(r["is_success"] and not r["collision"] for r in results), [(r["instruction"], r) for r in results]
    m = driving_metrics(results)
    assert m["success_rate"] == 1.0 and m["route_completion"] == 1.0 and m["collisions_per_km"] == 0.0


def test_waypoints_and_ade_fde():
    # a car driving straight along +y at 1 m per frame: waypoints straight ahead (x forward in its frame)
    poses = np.stack([np.zeros(20), np.arange(20.0), np.full(20, np.pi / 2)], axis=1)
    wp, valid = waypoints_from_poses(poses, horizon=3, step=2)
    np.testing.assert_allclose(wp[0], [[2, 0], [4, 0], [6, 0]], atol=1e-5)
    assert valid[0].all() and not valid[-1].any()
    np.testing.assert_allclose(wp[-1], 0.0, atol=1e-5)  # past the end: the ego stands still
    pred = wp[None, 0] + np.array([0.0, 1.0])  # 1 m off sideways everywhere
    ade, fde = ade_fde(pred, wp[None, 0])
    assert ade == pytest.approx(1.0) and fde == pytest.approx(1.0)


def test_datagen_writes_every_sensor_as_lerobot_features(tmp_path):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from vla_engine.data import generate_dataset

    out = generate_dataset("driving/stop-behind", 1, tmp_path / "ds", workers=0, progress=False, image_size=32)
    ds = LeRobotDataset("local/driving-stop-behind", root=out)  # lerobot's own reader
    item = ds[3]
    assert tuple(item["observation.lidar"].shape) == (64 * 16, 4) and item["observation.lidar_mask"].sum() > 0
    assert tuple(item["observation.radar"].shape) == (16, 4) and tuple(item["observation.imu"].shape)[1] == 6
    wp = item["action.waypoints"].numpy()
    assert wp.shape == (6, 2) and wp[-1, 0] > wp[0, 0] >= 0  # ahead of the ego, further out with time


def _place_behind_target(env, gap):
    """Moves the ego to ``gap`` m (bumper to bumper) behind the named car, on the route, and observes."""
    from vla_engine.envs.driving.world import CAR_LENGTH

    u = env.unwrapped
    t = u.vehicles[u.scenario.target]
    s = t.s - CAR_LENGTH - gap
    xy = u.route.at(s)
    u.ego[:] = (xy[0], xy[1], u.route.heading_at(s))
    u.progress_s = s
    return u._observe()


def _red_share(img):
    r, g, b = (img[..., k].astype(int) for k in range(3))
    return float(((r > 150) & (g < 80) & (b < 80)).mean())


def test_front_camera_sees_a_car_a_few_metres_ahead():
    # the near clipping plane is in metres: a car 3 m ahead covers a wide patch (it once vanished within 7.5 m)
    env = make_env("driving/stop-behind", image_size=64)
    env.reset(seed=0, options={"color": "red"})
    near = _place_behind_target(env, 3.0)["pixels"]
    far = _place_behind_target(env, 25.0)["pixels"]
    assert _red_share(near) > 0.02 and _red_share(near) > 20 * _red_share(far) > 0


def test_fog_hides_what_is_far_from_the_camera_only():
    clear, fog = make_env("driving/queue", image_size=64), make_env("driving/queue-fog", image_size=64)
    assert task_info("driving/queue-fog")["visibility"] == 12.0 and task_info("driving/queue")["visibility"] is None
    for env in (clear, fog):
        env.reset(seed=4, options={"color": "red"})
    far = [_place_behind_target(env, 20.0) for env in (clear, fog)]
    near = [_place_behind_target(env, 2.0) for env in (clear, fog)]
    assert _red_share(far[0]["pixels"]) > 0 and _red_share(far[1]["pixels"]) == 0  # 20 m: lost in the fog
    assert _red_share(near[1]["pixels"]) > 0.01  # 2 m: still seen
    for k in ("lidar", "lidar_mask", "pose"):  # range sensors unaffected
        np.testing.assert_array_equal(far[0][k], far[1][k], err_msg=k)
    np.testing.assert_array_equal(clear.unwrapped.render_bev(64), fog.unwrapped.render_bev(64))  # no fog from above


def test_queue_without_the_car_ahead_in_view_ends_in_collisions():
    # the decisive cue of driving/queue is the slower car ahead: ignoring it (full throttle along the route) crashes
    env = make_env("driving/queue", image_size=32, render_images=False)
    expert = make_expert(env)
    crashes = 0
    for seed in range(3):
        env.reset(seed=seed)
        for _ in range(env.unwrapped.max_episode_steps):
            a = expert.act()
            _, _, term, trunc, info = env.step(np.array([a[0], 1.0, 0.0], np.float32))
            if term or trunc:
                break
        crashes += int(info["collision"])
        assert info["route_completion"] < 1.0
    assert crashes >= 2


def test_convoy_lead_brakes_hard_stands_and_drives_on():
    # driving/convoy-fog: the named car makes emergency stops mid-route; the expert (reading the gap, as the range
    # sensors do) stops behind it, and copying the expert's steering at full throttle runs into it
    env = make_env("driving/convoy-fog", image_size=32, render_images=False)
    env.reset(seed=3)
    u, expert = env.unwrapped, make_expert(env)
    lead = u.vehicles[u.scenario.target]
    first_stop = lead.stops[0][0]
    speeds, gaps = [], []
    for _ in range(u.max_episode_steps):
        _, _, term, trunc, info = env.step(expert.act())
        speeds.append(lead.v), gaps.append(u.target_gap())
        if term or trunc:
            break
    assert info["is_success"] and not info["collision"]
    stood = [k for k, v in enumerate(speeds) if v == 0.0]
    assert stood and lead.s > first_stop and max(speeds[stood[0]:]) > 5.0  # stood mid-route, then drove on
    assert min(np.diff(speeds)) <= -0.55  # a hard stop: 6 m/s^2 at 10 Hz, not IDM's comfortable 3 m/s^2
    assert min(gaps) > 0
    env.reset(seed=3)
    for _ in range(u.max_episode_steps):
        a = expert.act()
        _, _, term, trunc, info = env.step(np.array([a[0], 1.0, 0.0], np.float32))
        if term or trunc:
            break
    assert info["collision"] and info["route_completion"] < 1.0
