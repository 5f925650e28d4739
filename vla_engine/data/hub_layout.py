"""The on-disk layout of LeRobot's public simulation datasets (PushT, ALOHA sim, xArm), and a writer for it.

:data:`HUB_SPECS` holds, per hub repo id, what its ``meta/info.json`` declares in LeRobot's v3.0 codebase:
fps, the camera key(s) and frame size, the state and action widths with their names, the per-frame scalar
columns (``next.reward``, ``next.done``, ``next.success``), the robot type and the task string. The readers in
:mod:`.hub_datasets` check a local folder against it; :func:`write_hub_dataset` writes episodes in that
layout (tests make tiny copies of the real datasets with it; a user can convert their own recordings).

The writer goes through lerobot's own ``LeRobotDataset`` writer (:class:`.lerobot_io.LeRobotWriter`: videos,
``meta/episodes``, ``meta/stats.json``, ``meta/tasks.parquet``), then adds the scalar columns itself:
lerobot 0.4.4 cannot record shape-(1,) features under numpy 2 (its frame check wants an array, its parquet
encoder a scalar), while the hub files hold them as scalar parquet columns declared with shape [1]. They are
added where lerobot would have put them: a column of every ``data/`` file (and its ``huggingface`` schema
metadata), a feature of ``meta/info.json``, an entry of ``meta/stats.json`` and ``stats/<key>/<stat>``
columns of ``meta/episodes``, with the statistics computed by lerobot's own ``compute_stats`` functions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .lerobot_io import ACTION_KEY, STATE_KEY, DatasetError, LeRobotWriter

ALOHA_MOTORS = [f"{side}_{j}" for side in ("left", "right") for j in
                ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate", "gripper")]
SCALAR_DTYPES = {"next.reward": "float32", "next.done": "bool", "next.success": "bool"}


@dataclass(frozen=True)
class HubSpec:
    """What one hub dataset's ``meta/info.json`` declares (see the module docstring)."""

    repo_id: str
    fps: int
    cameras: dict[str, tuple[int, int]]  # raw key -> (height, width)
    state_names: list[str]
    action_names: list[str]
    scalars: tuple[str, ...]  # per-frame scalar columns, keys of SCALAR_DTYPES
    task: str
    robot_type: str
    video: bool = True  # False: the "_image" variants keep PNG frames in the parquet files
    episode_length: int = 0  # frames per episode in the published dataset (0: varies)
    note: str = field(default="", compare=False)

    @property
    def state_dim(self) -> int:
        return len(self.state_names)

    @property
    def action_dim(self) -> int:
        return len(self.action_names)

    def features(self) -> dict[str, dict]:
        """LeRobot features of the dataset (without the index columns lerobot adds itself)."""
        kind = "video" if self.video else "image"
        feats: dict[str, dict] = {
            key: {"dtype": kind, "shape": (h, w, 3), "names": ["height", "width", "channel"]}
            for key, (h, w) in self.cameras.items()
        }
        feats[STATE_KEY] = {"dtype": "float32", "shape": (self.state_dim,), "names": {"motors": self.state_names}}
        feats[ACTION_KEY] = {"dtype": "float32", "shape": (self.action_dim,), "names": {"motors": self.action_names}}
        return feats


def _motors(n: int) -> list[str]:
    return [f"motor_{i}" for i in range(n)]


def _specs() -> dict[str, HubSpec]:
    specs: list[HubSpec] = []
    for suffix, video in (("", True), ("_image", False)):
        specs.append(HubSpec(f"lerobot/pusht{suffix}", 10, {"observation.image": (96, 96)}, _motors(2), _motors(2),
                             ("next.reward", "next.done", "next.success"),
                             "Push the T-shaped block onto the T-shaped target.", "unknown", video,
                             note="206 episodes, 25,650 frames; state = agent x, y and action = target x, y in pixels"))
        for task, text in (("insertion", "Insert the peg into the socket."),
                           ("transfer_cube", "Pick up the cube with the right arm and transfer it to the left arm.")):
            for source in ("human", "scripted"):
                specs.append(HubSpec(f"lerobot/aloha_sim_{task}_{source}{suffix}", 50,
                                     {"observation.images.top": (480, 640)}, list(ALOHA_MOTORS), list(ALOHA_MOTORS),
                                     ("next.done",), text, "aloha", video,
                                     episode_length=500 if source == "human" else 400,
                                     note="50 episodes; joint positions of both arms, grippers normalised 0..1"))
        for task, n_act, text in (("lift", 4, "Pick up the cube and lift it."),
                                  ("push", 3, "Push the cube to the target.")):
            for level in ("medium", "medium_replay"):
                specs.append(HubSpec(f"lerobot/xarm_{task}_{level}{suffix}", 15, {"observation.image": (84, 84)},
                                     _motors(4), _motors(n_act), ("next.reward", "next.done"), text, "unknown",
                                     video, episode_length=25,
                                     note="FOWM's xArm data: 800 episodes of 25 frames, 84 px camera"))
    return {s.repo_id: s for s in specs}


HUB_SPECS: dict[str, HubSpec] = _specs()


def hub_spec(repo_id: str) -> HubSpec:
    """The spec of a known hub dataset; DatasetError listing the known ids otherwise."""
    try:
        return HUB_SPECS[repo_id]
    except KeyError:
        raise DatasetError(f"'{repo_id}' is not a known hub simulation dataset; choose one of: "
                           f"{', '.join(HUB_SPECS)}") from None


def write_hub_dataset(repo_id: str, root: str | Path, episodes: Sequence[Mapping[str, Any]], *,
                      overwrite: bool = False, vcodec: str = "libsvtav1") -> Path:
    """Write ``episodes`` at ``root`` in the layout of the hub dataset ``repo_id`` (see the module docstring).

    Each episode maps the spec's camera key(s) to uint8 (T, H, W, 3) frames, ``observation.state`` to (T, S),
    ``action`` to (T, A) and every scalar column of the spec to (T,) values, except ``next.done``, which is
    written True on the last frame when it is not given. An optional ``"task"`` replaces the spec's string.
    """
    spec = hub_spec(repo_id)
    if not episodes:
        raise DatasetError("write_hub_dataset needs at least one episode")
    feats = spec.features()
    per_episode_scalars: list[dict[str, np.ndarray]] = []
    writer = LeRobotWriter(root, repo_id, spec.fps, feats, robot_type=spec.robot_type, use_videos=spec.video,
                           vcodec=vcodec, overwrite=overwrite)
    with writer:
        for i, ep in enumerate(episodes):
            n = len(np.asarray(ep[ACTION_KEY]))
            for key, (h, w) in spec.cameras.items():
                shape = np.asarray(ep[key]).shape if key in ep else None
                if shape != (n, h, w, 3):
                    raise DatasetError(f"episode {i}: '{key}' of {repo_id} must be uint8 ({n}, {h}, {w}, 3) frames; "
                                       f"got {shape or 'nothing'}")
            scalars = {}
            for key in spec.scalars:
                if key in ep:
                    scalars[key] = np.asarray(ep[key]).reshape(-1).astype(SCALAR_DTYPES[key])
                elif key == "next.done":
                    scalars[key] = np.arange(n) == n - 1
                else:
                    raise DatasetError(f"episode {i} has no '{key}' column; {repo_id} records it for every frame")
                if len(scalars[key]) != n:
                    raise DatasetError(f"episode {i}: '{key}' has {len(scalars[key])} values for {n} frames")
            per_episode_scalars.append(scalars)
            writer.add_episode({k: ep[k] for k in feats}, task=str(ep.get("task", spec.task)))
    if spec.scalars:
        add_scalar_columns(writer.root, per_episode_scalars)
    return writer.root


def add_scalar_columns(root: str | Path, per_episode: list[dict[str, np.ndarray]]) -> None:
    """Add per-frame scalar columns (``next.reward``, ...) to a finalized LeRobot v3 dataset, in every place
    lerobot keeps a feature: data files, ``info.json``, ``stats.json`` and the ``meta/episodes`` stats."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from lerobot.datasets.compute_stats import aggregate_stats, get_feature_stats

    root = Path(root)
    keys = list(per_episode[0])
    full = {k: np.concatenate([ep[k] for ep in per_episode]) for k in keys}  # in episode order = index order
    arrow_type = {"float32": pa.float32(), "bool": pa.bool_()}
    for f in sorted((root / "data").glob("*/*.parquet")):
        table = pq.read_table(f)
        rows = table.column("index").to_numpy()
        meta = dict(table.schema.metadata or {})
        hf = json.loads(meta[b"huggingface"]) if b"huggingface" in meta else None
        for k in keys:
            table = table.append_column(pa.field(k, arrow_type[SCALAR_DTYPES[k]]), pa.array(full[k][rows]))
            if hf is not None:
                hf["info"]["features"][k] = {"dtype": SCALAR_DTYPES[k], "_type": "Value"}
        if hf is not None:
            meta[b"huggingface"] = json.dumps(hf).encode()
        pq.write_table(table.replace_schema_metadata(meta), f)

    info_path = root / "meta" / "info.json"
    info = json.loads(info_path.read_text())
    feats = info["features"]
    ordered = {}
    for name, ft in feats.items():  # the scalars go right after the action, as in the hub's info.json
        ordered[name] = ft
        if name == ACTION_KEY:
            ordered.update({k: {"dtype": SCALAR_DTYPES[k], "shape": [1], "names": None} for k in keys})
    info["features"] = ordered
    info_path.write_text(json.dumps(info, indent=4) + "\n")

    ep_stats = [{k: get_feature_stats(ep[k].astype(np.float64), axis=0, keepdims=True) for k in keys}
                for ep in per_episode]
    stats_path = root / "meta" / "stats.json"
    stats = json.loads(stats_path.read_text()) if stats_path.is_file() else {}
    for k, st in aggregate_stats(ep_stats).items():
        stats[k] = {name: np.asarray(v).tolist() for name, v in st.items()}
    stats_path.write_text(json.dumps(stats, indent=4) + "\n")

    for f in sorted((root / "meta" / "episodes").glob("*/*.parquet")):
        table = pq.read_table(f)
        eps = table.column("episode_index").to_numpy()
        template = {name.split("/")[-1]: table.schema.field(name).type
                    for name in table.schema.names if name.startswith("stats/timestamp/")}
        for k in keys:
            for stat, typ in template.items():
                values = [np.asarray(ep_stats[int(e)][k][stat]).reshape(-1).tolist() for e in eps]
                table = table.append_column(pa.field(f"stats/{k}/{stat}", typ), pa.array(values, type=typ))
        pq.write_table(table, f)
