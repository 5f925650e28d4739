"""LeRobot v3 datasets as torch Datasets of VLA training items, read through a decode-once cache.

``LeRobotVLADataset`` opens a dataset with lerobot's own ``LeRobotDataset(repo_id, root=...,
delta_timestamps=...)`` (the same call downloads a hub dataset when a network is there), then
decodes every camera frame ONCE into a memory-mapped uint8 array (see :mod:`.frame_cache`) and
indexes that in ``__getitem__``.

Items reproduce lerobot's ``delta_timestamps`` semantics exactly: observation history
``-(n_obs_steps-1)/fps ... 0`` and action chunks ``0 ... (chunk_size-1)/fps``, indices clamped to
the episode's bounds, and ``<key>_is_pad`` flags for the clamped positions. Item layout::

    observation.images.<cam>  float32 (3, H, W) in [0, 1]    ((T, 3, H, W) when n_obs_steps > 1)
    observation.state         float32 (S,)                     ((T, S) when n_obs_steps > 1)
    action                    float32 (chunk_size, A)          (chunk axis even when chunk_size == 1)
    action_is_pad             bool (chunk_size,)
    <obs key>_is_pad          bool (T,)                        (only when n_obs_steps > 1)
    task                      str (the instruction)
    index, episode_index, frame_index, task_index  int64 0-d; timestamp float32 0-d

Chunk labels: a dataset generated with ``plan_horizon`` H (see ``datagen``) also holds the expert's
noise-free plan from every frame. ``chunk_labels="plan"`` takes the action chunk from it (padding
where the plan ran past the episode's end) instead of from the recorded actions t, t+1, ...: with
DART noise the recorded future actions answer noise the observation at t cannot foresee. The first
action of the chunk is the same either way. ``"auto"`` (default) uses the plan when the dataset has
one at least ``chunk_size`` long and ``chunk_size > 1``.

Errors that a user can fix (no dataset at the root, a truncated parquet file, a missing meta or
video file, no network for a hub dataset) raise :class:`DatasetError` with one line naming the
file and the fix.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from .collate import BatchList
from .dataset_files import check_dataset_files, fix_hint, parse_split, resolve_bound, short_error
from .frame_cache import (
    cache_folder,
    decode_images,
    decode_videos,
    image_hw,
    load_columns,
    open_frames,
    to_float_chw,
)
from .lerobot_io import PLAN_KEY, PLAN_VALID_KEY, DatasetError, quiet_datasets, read_sidecar, video_backend

# lerobot's bookkeeping columns: never normalised, never given observation/action deltas
_INDEX_KEYS = ("timestamp", "frame_index", "episode_index", "index", "task_index")
_STAT_NAMES = ("mean", "std", "min", "max")
CHUNK_LABELS = ("auto", "recorded", "plan")


class LeRobotVLADataset(torch.utils.data.Dataset):
    """A LeRobot v3 dataset as a torch Dataset of VLA training items (see the module docstring).

    Args:
        repo_id: "owner/name"; a local dataset written here uses e.g. "local/push".
        root: the dataset folder. None means lerobot's default ``$HF_LEROBOT_HOME/<repo_id>``; a
            folder without the dataset is filled from the Hugging Face hub when it is reachable
            (repo ids starting with "local/" are never looked up on the hub).
        n_obs_steps: observation history length T (1 = the current frame only).
        chunk_size: actions per item (the current one and the next ``chunk_size - 1``).
        episodes: episode indices to load (None = all).
        image_keys: the cameras to load (None = all of the dataset's cameras).
        cache_dir: where the decoded frame cache goes (default ``<root>/.vla_cache``; a user cache
            folder when the root is read-only).
        split: "train" (everything), "train[:1000]" / "train[1000:]" (frames) or "train[:90%]" /
            "train[90%:]" (episodes, so a validation split shares no episode with training).
        chunk_labels: "recorded", "plan" or "auto": where action chunks come from (module docstring).
    """

    def __init__(
        self,
        repo_id: str,
        root: str | Path | None = None,
        n_obs_steps: int = 1,
        chunk_size: int = 1,
        episodes: list[int] | None = None,
        image_keys: list[str] | None = None,
        cache_dir: str | Path | None = None,
        split: str = "train",
        chunk_labels: str = "auto",
    ) -> None:
        super().__init__()
        if chunk_labels not in CHUNK_LABELS:
            raise ValueError(f"chunk_labels must be one of {', '.join(CHUNK_LABELS)}, got {chunk_labels!r}")
        if int(n_obs_steps) < 1:
            raise ValueError(f"n_obs_steps must be >= 1, got {n_obs_steps}")
        if int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.repo_id = repo_id
        self.n_obs_steps = int(n_obs_steps)
        self.chunk_size = int(chunk_size)
        self.split = split
        split_name, split_bounds = parse_split(split)
        if split_name != "train":
            raise DatasetError(
                f"split '{split}': LeRobot datasets have one split, 'train'; select parts with "
                "'train[:90%]' / 'train[90%:]'"
            )

        from lerobot.utils.constants import HF_LEROBOT_HOME

        self.root = Path(root) if root is not None else Path(HF_LEROBOT_HOME) / repo_id
        self._ensure_local()

        info = check_dataset_files(self.root)
        self.fps: int = int(info["fps"])
        features = info["features"]
        self.features: dict[str, dict] = features
        camera_keys = [k for k, ft in features.items() if ft["dtype"] in ("image", "video")]
        if image_keys is None:
            image_keys = camera_keys
        unknown = [k for k in image_keys if k not in camera_keys]
        if unknown:
            raise DatasetError(
                f"image_keys {unknown} are not cameras of {self.root}; choose from: {', '.join(camera_keys)}"
            )
        self._image_keys = list(image_keys)
        self._numeric_keys = [
            k
            for k, ft in features.items()
            if ft["dtype"] not in ("image", "video", "string") and k not in _INDEX_KEYS
        ]
        if "action" not in features:
            raise DatasetError(f"dataset {self.root} has no 'action' feature; it cannot train a policy")
        self.plan_horizon = int(features[PLAN_KEY]["shape"][0]) if PLAN_KEY in features else 0
        self.use_plan = self._choose_chunk_labels(chunk_labels)
        self.chunk_labels = "plan" if self.use_plan else "recorded"
        self.delta_timestamps = self._build_delta_timestamps()
        self.delta_indices = {
            k: [round(d * self.fps) for d in v] for k, v in self.delta_timestamps.items()
        }

        # lerobot's own reader: validates the dataset, gives meta (tasks, episodes, stats)
        self._episodes_arg = sorted(int(e) for e in episodes) if episodes is not None else None
        n_eps = int(info["total_episodes"])
        if self._episodes_arg is not None:
            bad = [e for e in self._episodes_arg if not 0 <= e < n_eps]
            if bad:
                raise DatasetError(f"episodes {bad} are out of range; {self.root} has episodes 0..{n_eps - 1}")
        self._lerobot = self._open_lerobot()
        meta = self._lerobot.meta
        ep_table = meta.episodes.select_columns(
            ["episode_index", "dataset_from_index", "dataset_to_index"]
        ).with_format("numpy")
        ep_idx = np.asarray(ep_table["episode_index"], dtype=np.int64)
        self._ep_from = np.zeros(n_eps, dtype=np.int64)
        self._ep_to = np.zeros(n_eps, dtype=np.int64)
        self._ep_from[ep_idx] = np.asarray(ep_table["dataset_from_index"], dtype=np.int64)
        self._ep_to[ep_idx] = np.asarray(ep_table["dataset_to_index"], dtype=np.int64)
        tasks_df = meta.tasks.sort_values("task_index")
        self._task_strings: list[str] = [str(t) for t in tasks_df.index]
        self._stats_raw = meta.stats or {}
        self.meta_info: dict | None = read_sidecar(self.root)

        # decode-once cache
        self._cache_path = cache_folder(self.root, self.repo_id, cache_dir)
        self._arrays: dict[str, np.ndarray] | None = None
        cols = load_columns(self._cache_path, self.root, list(_INDEX_KEYS) + self._numeric_keys, self.features)
        self._cols = cols
        total = len(cols["index"])

        # rows of this dataset (absolute frame indices), then the split
        selected = self._episodes_arg if self._episodes_arg is not None else list(range(n_eps))
        rows = np.concatenate(
            [np.arange(self._ep_from[e], self._ep_to[e], dtype=np.int64) for e in selected]
        ) if selected else np.zeros(0, dtype=np.int64)
        rows.sort()
        if rows.size and rows[-1] >= total:
            raise DatasetError(
                f"meta/episodes of {self.root} points past the data ({rows[-1]} >= {total} frames); "
                f"{fix_hint(self.root)}"
            )
        if split_bounds is not None:
            lo, hi = split_bounds
            if (lo or hi or "").endswith("%"):
                n = len(selected)
                a, b = resolve_bound(lo, n, 0), resolve_bound(hi, n, n)
                keep = set(sorted(selected)[a:b])
                rows = rows[np.isin(self._cols["episode_index"][rows], list(keep))]
            else:
                n = len(rows)
                rows = rows[resolve_bound(lo, n, 0) : resolve_bound(hi, n, n)]
        self._rows = rows
        self._episode_ids = sorted(set(int(e) for e in np.unique(self._cols["episode_index"][rows])))

    def _choose_chunk_labels(self, wanted: str) -> bool:
        """True when action chunks come from the expert plans (see the module docstring)."""
        fits = 0 < self.chunk_size <= self.plan_horizon and PLAN_VALID_KEY in self.features
        if wanted == "plan" and not fits:
            have = (f"plans of {self.plan_horizon} steps, fewer than chunk_size={self.chunk_size}"
                    if self.plan_horizon else "no expert plans (action.plan)")
            raise DatasetError(
                f"chunk_labels='plan' but {self.root} has {have}; regenerate it with `vla datagen --plan-horizon "
                f"{max(self.chunk_size, 8)}` (dataset.plan_horizon) or use chunk_labels='recorded'"
            )
        return wanted == "plan" or (wanted == "auto" and fits and self.chunk_size > 1)

    # ---------------------------------------------------------------------------- opening
    def _ensure_local(self) -> None:
        """Make sure ``self.root`` holds the dataset: download it, or its missing files, from the hub.

        A "local/" dataset is never looked up on the hub: a missing file is reported by name. A hub
        dataset with files missing (an interrupted download) is completed by lerobot when the hub is
        reachable; when it is not, the error names the first missing file, not the connection.
        """
        if self.repo_id.startswith("local/") or self.root.is_file():
            if not (self.root / "meta" / "info.json").is_file():
                check_dataset_files(self.root)  # raises the precise error
            return
        if (self.root / "meta" / "info.json").is_file():
            try:
                check_dataset_files(self.root)
                return
            except DatasetError as e:
                incomplete: DatasetError | None = e
        else:
            incomplete = None
        existed = self.root.exists()
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        try:
            with quiet_datasets():
                LeRobotDataset(self.repo_id, root=self.root, video_backend=video_backend())
        except Exception as e:
            if incomplete is not None:
                raise incomplete from None
            if not existed:  # lerobot made <root>/meta before it failed; leave nothing behind
                for d in (self.root / "meta", self.root):
                    with contextlib.suppress(OSError):
                        d.rmdir()
            raise DatasetError(
                f"dataset '{self.repo_id}' is not found locally at {self.root} and could not be fetched "
                f"from the Hugging Face hub ({short_error(e)}); connect to the network or pass root= a local copy"
            ) from None

    def _open_lerobot(self):
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        try:
            with quiet_datasets():
                return LeRobotDataset(
                    self.repo_id,
                    root=self.root,
                    episodes=self._episodes_arg,
                    delta_timestamps=self.delta_timestamps,
                    video_backend=video_backend(),
                )
        except DatasetError:
            raise
        except Exception as e:
            raise DatasetError(f"lerobot could not open {self.root} ({short_error(e)}); {fix_hint(self.root)}") from None

    @property
    def lerobot(self):
        """lerobot's own ``LeRobotDataset`` over the same data, episodes and delta_timestamps."""
        if self._lerobot is None:
            self._lerobot = self._open_lerobot()
        return self._lerobot

    def _build_delta_timestamps(self) -> dict[str, list[float]]:
        dt: dict[str, list[float]] = {}
        if self.n_obs_steps > 1:
            obs = [(i - (self.n_obs_steps - 1)) / self.fps for i in range(self.n_obs_steps)]
            for k in self._image_keys:
                dt[k] = list(obs)
            for k in self._numeric_keys:
                if k.startswith("observation."):
                    dt[k] = list(obs)
        dt["action"] = [i / self.fps for i in range(self.chunk_size)]
        return dt

    # ---------------------------------------------------------------------------- the cache
    def _frames(self, key: str) -> np.ndarray:
        """The (N, H, W, 3) uint8 memory map of camera ``key``; decoded into the cache on first use."""
        if self._arrays is None:
            self._arrays = {}
        arr = self._arrays.get(key)
        if arr is None:
            n = len(self._cols["index"])
            arr = open_frames(self._cache_path, key, n, self._image_hw(key), lambda out: self._decode(key, out))
            self._arrays[key] = arr
        return arr

    def _decode(self, key: str, out: np.ndarray) -> None:
        if self.features[key]["dtype"] == "video":
            decode_videos(self.root, key, out, self.lerobot.meta, self._cols["timestamp"], self.fps)
        else:
            decode_images(self.root, key, out)

    def _image_hw(self, key: str) -> tuple[int, int]:
        return image_hw(self.features[key])

    def build_cache(self) -> Path:
        """Decode every selected camera now (otherwise it happens on the first item)."""
        for k in self._image_keys:
            self._frames(k)
        return self._cache_path

    # ---------------------------------------------------------------------------- pickling
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_arrays"] = None  # memory maps re-open in each DataLoader worker
        state["_lerobot"] = None  # re-opened lazily (``.lerobot``) where needed
        return state

    # ---------------------------------------------------------------------------- items
    def __len__(self) -> int:
        return int(self._rows.shape[0])

    def _query(self, abs_idx: np.ndarray) -> dict[str, Any]:
        """Batched item assembly for absolute frame indices ``abs_idx`` (B,)."""
        cols = self._cols
        ep = cols["episode_index"][abs_idx]  # (B,)
        start = self._ep_from[ep][:, None]  # (B, 1)
        end = self._ep_to[ep][:, None]  # (B, 1)
        out: dict[str, Any] = {}
        obs_keys = set(self.delta_indices) - {"action"}
        for key, deltas in self.delta_indices.items():
            if key == "action" and self.use_plan:
                c = self.chunk_size
                out["action_is_pad"] = torch.from_numpy(cols[PLAN_VALID_KEY][abs_idx, :c] < 0.5)  # (B, chunk)
                out["action"] = torch.from_numpy(np.ascontiguousarray(cols[PLAN_KEY][abs_idx, :c]))  # (B, chunk, A)
                continue
            raw = abs_idx[:, None] + np.asarray(deltas, dtype=np.int64)[None, :]  # (B, D)
            q = np.clip(raw, start, end - 1)  # (B, D)
            pad = (raw < start) | (raw >= end)  # (B, D)
            out[f"{key}_is_pad"] = torch.from_numpy(pad)
            if key in self._image_keys:
                out[key] = to_float_chw(self._frames(key)[q.reshape(-1)], q.shape)  # (B, D, 3, H, W)
            else:
                out[key] = torch.from_numpy(np.ascontiguousarray(cols[key][q]))  # (B, D, ...)
        for key in self._image_keys:
            if key not in obs_keys:
                out[key] = to_float_chw(self._frames(key)[abs_idx], None)  # (B, 3, H, W)
        for key in self._numeric_keys:
            if key not in self.delta_indices and key not in (PLAN_KEY, PLAN_VALID_KEY):  # plans: only as labels
                out[key] = torch.from_numpy(np.ascontiguousarray(cols[key][abs_idx]))  # (B, ...)
        for key in _INDEX_KEYS:
            out[key] = torch.from_numpy(np.ascontiguousarray(cols[key][abs_idx]))  # (B,)
        out["task"] = [self._task_strings[int(t)] for t in cols["task_index"][abs_idx]]
        return out

    def _positions(self, idx: Iterable[int]) -> np.ndarray:
        pos = np.asarray(list(idx), dtype=np.int64)
        n = len(self)
        if pos.size and (pos.min() < -n or pos.max() >= n):
            raise IndexError(f"index out of range for a dataset of {n} frames")
        return self._rows[pos % n] if n else pos

    def __getitem__(self, idx: int) -> dict[str, Any]:
        if isinstance(idx, torch.Tensor):
            idx = int(idx)
        batch = self._query(self._positions([idx]))
        return {k: (v[0] if not isinstance(v, list) else v[0]) for k, v in batch.items()}

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        """Batched fetch used by torch's DataLoader: one gather for the whole batch."""
        batch = self._query(self._positions(indices))
        n = len(indices)
        items = BatchList(
            {k: v[i] for k, v in batch.items()} for i in range(n)
        )
        items.batch = batch
        return items

    # ---------------------------------------------------------------------------- properties
    @property
    def num_frames(self) -> int:
        return len(self)

    @property
    def num_episodes(self) -> int:
        return len(self._episode_ids)

    @property
    def episode_indices(self) -> list[int]:
        """Episode indices present in this dataset (after ``episodes`` and ``split``)."""
        return list(self._episode_ids)

    @property
    def action_dim(self) -> int:
        return int(self.features["action"]["shape"][0])

    @property
    def state_dim(self) -> int:
        ft = self.features.get("observation.state")
        return int(ft["shape"][0]) if ft else 0

    @property
    def image_keys(self) -> list[str]:
        return list(self._image_keys)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(3, H, W) of the first camera."""
        h, w = self._image_hw(self._image_keys[0]) if self._image_keys else (0, 0)
        return (3, h, w)

    @property
    def tasks(self) -> list[str]:
        """The unique instructions of the dataset, in task_index order."""
        return list(self._task_strings)

    @property
    def stats(self) -> dict[str, dict[str, torch.Tensor]]:
        """lerobot's ``meta/stats.json`` as float32 tensors: key -> {mean, std, min, max}.

        Image stats are per channel with shape (3, 1, 1) in [0, 1], as lerobot computes them."""
        out: dict[str, dict[str, torch.Tensor]] = {}
        for key, st in self._stats_raw.items():
            if key in _INDEX_KEYS or not all(s in st for s in _STAT_NAMES):
                continue
            out[key] = {s: torch.as_tensor(np.asarray(st[s]), dtype=torch.float32) for s in _STAT_NAMES}
        return out

    def episode_bounds(self, ep: int) -> tuple[int, int]:
        """Absolute frame range [start, end) of episode ``ep`` in the dataset's files."""
        if not 0 <= int(ep) < len(self._ep_from):
            raise IndexError(f"episode {ep} out of range (0..{len(self._ep_from) - 1})")
        return int(self._ep_from[ep]), int(self._ep_to[ep])

    def episode_frames(self, ep: int, key: str | None = None) -> np.ndarray:
        """All uint8 (T, H, W, 3) frames of episode ``ep`` (for browsing and videos)."""
        a, b = self.episode_bounds(ep)
        return np.asarray(self._frames(key or self._image_keys[0])[a:b])

    def episode_data(self, ep: int) -> dict[str, Any]:
        """States, actions and the instruction of episode ``ep`` as numpy arrays."""
        a, b = self.episode_bounds(ep)
        d: dict[str, Any] = {k: np.asarray(self._cols[k][a:b]) for k in self._numeric_keys}
        d["task"] = self._task_strings[int(self._cols["task_index"][a])]
        return d

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(repo_id={self.repo_id!r}, root='{self.root}', frames={len(self)}, "
            f"episodes={self.num_episodes}, fps={self.fps}, cameras={self._image_keys}, "
            f"n_obs_steps={self.n_obs_steps}, chunk_size={self.chunk_size}, chunk_labels={self.chunk_labels!r})"
        )


def __getattr__(name: str) -> Any:
    """``PushTDataset`` lives with the other hub datasets (``hub_datasets``); imported from there on first use
    (that module imports this one, so a top-level import would be circular)."""
    if name == "PushTDataset":
        from .hub_datasets import PushTDataset

        return PushTDataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
