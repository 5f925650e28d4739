"""Write robot demonstrations as LeRobot v3 datasets, through lerobot's own writer.

Every episode goes through ``LeRobotDataset.create(...)`` / ``add_frame`` / ``save_episode`` /
``finalize()`` of the installed lerobot (0.4.x, codebase version v3.0), so what lands on disk is
exactly what lerobot itself would record: ``meta/info.json``, ``meta/stats.json``,
``meta/tasks.parquet``, ``meta/episodes/...parquet``, ``data/chunk-000/file-000.parquet`` and, with
``use_videos=True``, ``videos/<camera>/chunk-000/file-000.mp4``.

Next to lerobot's files the writer keeps a small JSON sidecar, ``meta/vla_engine.json``, naming the
task, image size, which seeds generated the episodes and the expert's success statistics, so an
evaluation can pick held-out seeds.

Frame layout (keys follow LeRobot): ``observation.images.<camera>`` uint8 (H, W, 3),
``observation.state`` float32 (S,), ``action`` float32 (A,); the instruction string goes to lerobot's
per-frame ``task``. (No ``next.reward``/``next.done``: lerobot 0.4.4 cannot write shape-(1,) features
with numpy 2, and the demonstrations here are all successful expert episodes anyway.)
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

CAMERA = "front"
IMAGE_KEY = f"observation.images.{CAMERA}"
STATE_KEY = "observation.state"
ACTION_KEY = "action"
PLAN_KEY = "action.plan"  # the expert's noise-free plan from each frame (H, A); see datagen.rollout_episode
PLAN_VALID_KEY = "action.plan_valid"  # (H,) 1.0 where the plan has a step, 0.0 past the episode's end
SIDECAR_PATH = "meta/vla_engine.json"
CACHE_DIR = ".vla_cache"
GENERATOR_VERSION = "1"


class DatasetError(ValueError):
    """A dataset is missing, incomplete or corrupt. The message is one line naming the fix."""


class DatasetExistsError(DatasetError):
    """The output folder of a dataset writer already holds files."""


def video_backend() -> str:
    """The decoder lerobot should use here: torchcodec when installed, else PyAV (no warning)."""
    return "torchcodec" if importlib.util.find_spec("torchcodec") is not None else "pyav"


def make_features(
    image_size: int | tuple[int, int],
    state_dim: int,
    action_dim: int,
    *,
    camera: str = CAMERA,
    use_videos: bool = False,
    plan_horizon: int = 0,
) -> dict[str, dict]:
    """LeRobot feature spec for one RGB camera, a state vector and an action vector.

    ``image_size`` is an int (square) or (height, width). ``plan_horizon`` H > 0 adds the expert's
    noise-free plan per frame: ``action.plan`` float32 (H, A) and ``action.plan_valid`` float32 (H,).
    """
    h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    features: dict[str, dict] = {
        f"observation.images.{camera}": {
            "dtype": "video" if use_videos else "image",
            "shape": (int(h), int(w), 3),
            "names": ["height", "width", "channels"],
        },
        STATE_KEY: {
            "dtype": "float32",
            "shape": (int(state_dim),),
            "names": [f"state_{i}" for i in range(int(state_dim))],
        },
        ACTION_KEY: {
            "dtype": "float32",
            "shape": (int(action_dim),),
            "names": [f"action_{i}" for i in range(int(action_dim))],
        },
    }
    if plan_horizon > 0:
        features[PLAN_KEY] = {"dtype": "float32", "shape": (int(plan_horizon), int(action_dim)),
                              "names": ["step", "action"]}
        features[PLAN_VALID_KEY] = {"dtype": "float32", "shape": (int(plan_horizon),), "names": None}
    return features


def check_output_dir(out: str | Path, overwrite: bool = False, remove: bool = True) -> Path:
    """Refuse a non-empty ``out`` unless ``overwrite``; with ``remove``, clear the way for lerobot
    (which creates the root itself): delete the old folder (``overwrite``) or an empty one."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DatasetExistsError(f"output path {out} is a file, not a folder; choose another --out")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise DatasetExistsError(
                f"output folder {out} already exists and is not empty; pass --overwrite "
                "(overwrite=True) to replace it or choose another --out"
            )
        if remove:
            shutil.rmtree(out)
    elif out.is_dir() and remove:
        out.rmdir()
    return out


@contextlib.contextmanager
def quiet_datasets() -> Iterator[None]:
    """Silence the `datasets` progress bars ("Map: ...") that lerobot triggers when it writes or opens a dataset."""
    import datasets

    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


class LeRobotWriter:
    """Record episodes into a new LeRobot v3 dataset with lerobot's own writer.

    >>> w = LeRobotWriter("datasets/push", "local/push", fps=10,
    ...                   features=make_features(96, state_dim=4, action_dim=2))
    >>> w.add_episode({"observation.images.front": frames, "observation.state": states,
    ...                "action": actions}, task="push the red cube onto the green target")
    >>> w.finalize(sidecar={"task": "push"})

    ``image_writer_threads`` threads encode the PNG frames while the caller goes on (lerobot's
    ``AsyncImageWriter``); ``use_videos=True`` encodes each episode to mp4 with ``vcodec``.
    """

    def __init__(
        self,
        root: str | Path,
        repo_id: str,
        fps: int,
        features: dict[str, dict],
        *,
        robot_type: str | None = None,
        use_videos: bool = False,
        image_writer_threads: int = 2,
        image_writer_processes: int = 0,
        vcodec: str = "libsvtav1",
        overwrite: bool = False,
    ) -> None:
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        self.root = check_output_dir(root, overwrite=overwrite)
        self.repo_id = repo_id
        self.features = dict(features)
        self.use_videos = use_videos
        has_video = any(ft["dtype"] == "video" for ft in self.features.values())
        if has_video and not use_videos:
            raise ValueError("features contain a 'video' camera; pass use_videos=True or use dtype 'image'")
        if use_videos and not has_video:
            self.features = {
                k: ({**ft, "dtype": "video"} if ft["dtype"] == "image" else ft) for k, ft in self.features.items()
            }
        self.camera_keys = [k for k, ft in self.features.items() if ft["dtype"] in ("image", "video")]
        if use_videos:  # the AV1 encoder prints a 20-line banner per episode at its default level
            os.environ.setdefault("SVT_LOG", "1")
        with quiet_datasets():
            self._ds = LeRobotDataset.create(
                repo_id=repo_id,
                fps=int(fps),
                features=self.features,
                root=self.root,
                robot_type=robot_type,
                use_videos=use_videos,
                image_writer_threads=image_writer_threads,
                image_writer_processes=image_writer_processes,
                video_backend=video_backend(),
                vcodec=vcodec,
            )
        self.fps = int(fps)
        self.num_episodes = 0
        self.num_frames = 0
        self._finalized = False

    # -- writing --------------------------------------------------------------------------------
    def add_episode(self, frames: Mapping[str, Any], task: str | list[str]) -> int:
        """Append one episode; ``frames`` maps each feature key to an array with a leading time axis.

        ``task`` is the instruction (one string, or one per frame). Returns the episode index.
        """
        if self._finalized:
            raise RuntimeError("this writer was finalized; open a new LeRobotWriter to add episodes")
        missing = [k for k in self.features if k not in frames]
        extra = [k for k in frames if k not in self.features]
        if missing or extra:
            raise ValueError(
                f"episode keys do not match the dataset features (missing: {missing}, unexpected: {extra})"
            )
        arrays = {k: np.asarray(frames[k]) for k in self.features}
        lengths = {k: len(a) for k, a in arrays.items()}
        n = next(iter(lengths.values()))
        if n == 0 or any(v != n for v in lengths.values()):
            raise ValueError(f"episode arrays must share one non-zero length; got lengths {lengths}")
        tasks = [task] * n if isinstance(task, str) else list(task)
        if len(tasks) != n:
            raise ValueError(f"got {len(tasks)} task strings for an episode of {n} frames")
        for k, ft in self.features.items():
            if ft["dtype"] not in ("image", "video", "string"):
                arrays[k] = arrays[k].astype(ft["dtype"], copy=False).reshape(n, *ft["shape"])
        with quiet_datasets():
            for t in range(n):
                frame = {k: a[t] for k, a in arrays.items()}
                frame["task"] = tasks[t]
                self._ds.add_frame(frame)
            self._ds.save_episode()
        self.num_episodes += 1
        self.num_frames += n
        return self.num_episodes - 1

    def finalize(self, sidecar: Mapping[str, Any] | None = None) -> Path:
        """Close lerobot's parquet writers (mandatory for a readable dataset) and write the sidecar."""
        if not self._finalized:
            self._ds.finalize()
            self._ds.stop_image_writer()
            self._finalized = True
            # lerobot leaves the (now empty) per-episode PNG folders behind; drop them
            images = self.root / "images"
            if images.is_dir() and not any(p.is_file() for p in images.rglob("*")):
                shutil.rmtree(images)
        if sidecar is not None:
            write_sidecar(self.root, sidecar)
        return self.root

    def abort(self) -> None:
        """Stop the writer threads after a failure (the partial folder stays for inspection)."""
        with contextlib.suppress(Exception):
            self._ds.stop_image_writer()
        with contextlib.suppress(Exception):
            self._ds.finalize()
        self._finalized = True

    def __enter__(self) -> "LeRobotWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.finalize()
        else:
            self.abort()


def write_sidecar(root: str | Path, data: Mapping[str, Any]) -> Path:
    """Write ``meta/vla_engine.json`` atomically (temporary name, then rename)."""
    path = Path(root) / SIDECAR_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(dict(data), indent=2, default=_json_default) + "\n")
    os.replace(tmp, path)
    return path


def read_sidecar(root: str | Path) -> dict | None:
    """The sidecar of a dataset written here, or None when the dataset has none (e.g. a hub dataset)."""
    path = Path(root) / SIDECAR_PATH
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        logging.getLogger(__name__).warning("ignoring unreadable %s (%s)", path, e)
        return None


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def write_dataset(
    root: str | Path,
    episodes: list[Mapping[str, Any]],
    *,
    repo_id: str = "local/dataset",
    fps: int = 10,
    image_size: int | None = None,
    use_videos: bool = False,
    sidecar: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write in-memory episodes as a LeRobot v3 dataset (a convenience over :class:`LeRobotWriter`).

    Each episode is ``{"observation.images.front": (T,H,W,3) uint8, "observation.state": (T,S),
    "action": (T,A), "task": str}``."""
    if not episodes:
        raise ValueError("write_dataset needs at least one episode")
    first = episodes[0]
    img = np.asarray(first[IMAGE_KEY])
    size = image_size if image_size is not None else (img.shape[1], img.shape[2])
    features = make_features(
        size,
        np.asarray(first[STATE_KEY]).shape[-1],
        np.asarray(first[ACTION_KEY]).shape[-1],
        use_videos=use_videos,
    )
    writer = LeRobotWriter(root, repo_id, fps, features, use_videos=use_videos, overwrite=overwrite)
    with writer:
        for ep in episodes:
            writer.add_episode({k: v for k, v in ep.items() if k != "task"}, task=ep["task"])
    writer.finalize(sidecar)
    return writer.root
