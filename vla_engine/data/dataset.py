"""Read LeRobot v3 datasets for training, fast: decode once into a memory-mapped cache.

``LeRobotVLADataset`` opens a dataset with lerobot's own ``LeRobotDataset(repo_id, root=...,
delta_timestamps=...)`` (the same call downloads a hub dataset when a network is there), then
decodes every camera frame ONCE into a uint8 ``.npy`` array ``(N, H, W, 3)`` stored under
``<root>/.vla_cache/<fingerprint>/`` and indexes that memory map in ``__getitem__``. The
fingerprint covers the dataset's files (path, size, mtime), so a regenerated dataset rebuilds its
cache and an unchanged one reuses it across runs and DataLoader workers.

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

Errors that a user can fix (no dataset at the root, a truncated parquet file, a missing meta
file, no network for a hub dataset) raise :class:`DatasetError` with one line naming the file and
the fix.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np
import torch

from .lerobot_io import PLAN_KEY, PLAN_VALID_KEY, CACHE_DIR, DatasetError, read_sidecar, video_backend

if TYPE_CHECKING:  # pragma: no cover
    from vla_engine.config.dataset_config import DatasetConfig

log = logging.getLogger(__name__)

CACHE_VERSION = "1"
# lerobot's bookkeeping columns: never normalised, never given observation/action deltas
_INDEX_KEYS = ("timestamp", "frame_index", "episode_index", "index", "task_index")
_STAT_NAMES = ("mean", "std", "min", "max")
CHUNK_LABELS = ("auto", "recorded", "plan")


# --------------------------------------------------------------------------------------------
# file checks and error messages
# --------------------------------------------------------------------------------------------
def _fix_hint(root: Path) -> str:
    side = read_sidecar(root) if root.is_dir() else None
    if side and side.get("task"):
        n = side.get("episodes_requested") or side.get("num_episodes") or 200
        size = side.get("image_size", 96)
        return (
            f"regenerate it with `vla datagen --task {side['task']} --episodes {n} "
            f"--image-size {size} --out {root} --overwrite`"
        )
    return f"regenerate it with `vla datagen --task <task> --out {root} --overwrite`, or re-download it"


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:160]}" if text else type(e).__name__


def _check_parquet(path: Path, root: Path) -> int:
    """Number of rows of a parquet file; DatasetError when it is truncated or not parquet."""
    import pyarrow.parquet as pq

    try:
        return pq.read_metadata(path).num_rows
    except Exception as e:  # ArrowInvalid, OSError, ...: a truncated or corrupt file
        raise DatasetError(
            f"corrupt or truncated parquet file {path} ({_short(e)}); {_fix_hint(root)}"
        ) from None


def check_dataset_files(root: str | Path) -> dict:
    """Check that ``root`` holds a complete LeRobot v3 dataset; return its ``meta/info.json``.

    Raises DatasetError naming the first missing or corrupt file and the fix.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist; {_fix_hint(root)}")
    info_path = root / "meta" / "info.json"
    if not info_path.is_file():
        raise DatasetError(
            f"{root} is not a LeRobot dataset: {info_path} is missing; {_fix_hint(root)}"
        )
    try:
        info = json.loads(info_path.read_text())
        features = info["features"]
        total_frames = int(info["total_frames"])
        version = str(info.get("codebase_version", ""))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DatasetError(f"unreadable dataset meta file {info_path} ({_short(e)}); {_fix_hint(root)}") from None
    if not version.startswith("v3"):
        raise DatasetError(
            f"{root} is a LeRobot {version or 'unknown-version'} dataset; this reader needs v3.0 "
            "(convert it with lerobot's lerobot/datasets/v30/convert_dataset_v21_to_v30.py)"
        )
    tasks = root / "meta" / "tasks.parquet"
    if not tasks.is_file():
        raise DatasetError(f"dataset meta file {tasks} is missing; {_fix_hint(root)}")
    _check_parquet(tasks, root)
    ep_files = sorted((root / "meta" / "episodes").glob("*/*.parquet"))
    if not ep_files:
        raise DatasetError(
            f"dataset meta files {root / 'meta' / 'episodes'}/chunk-*/file-*.parquet are missing; {_fix_hint(root)}"
        )
    for p in ep_files:
        _check_parquet(p, root)
    data_files = sorted((root / "data").glob("*/*.parquet"))
    if not data_files:
        raise DatasetError(f"no data files in {root / 'data'} (chunk-*/file-*.parquet); {_fix_hint(root)}")
    rows = sum(_check_parquet(p, root) for p in data_files)
    if rows != total_frames:
        raise DatasetError(
            f"incomplete dataset {root}: the data files hold {rows} frames but meta/info.json says "
            f"{total_frames}; {_fix_hint(root)}"
        )
    for key, ft in features.items():
        if ft.get("dtype") == "video" and not (root / "videos" / key).is_dir():
            raise DatasetError(f"video folder {root / 'videos' / key} is missing; {_fix_hint(root)}")
    return info


def _fingerprint(root: Path) -> str:
    """Hash of the dataset's files (relative path, size, mtime): changes when they are rewritten."""
    h = hashlib.sha1(f"vla-cache-{CACHE_VERSION}".encode())
    files = [root / "meta" / "info.json"]
    for pattern in ("data/*/*.parquet", "meta/episodes/*/*.parquet", "videos/*/*/*.mp4"):
        files.extend(sorted(root.glob(pattern)))
    for p in files:
        st = p.stat()
        h.update(f"{p.relative_to(root).as_posix()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder):
            pass
        return True
    except OSError:
        return False


# --------------------------------------------------------------------------------------------
# split parsing ("train", "train[:1000]", "train[:90%]", "train[90%:]")
# --------------------------------------------------------------------------------------------
_SPLIT_RE = re.compile(r"^\s*(\w+)\s*(?:\[\s*(-?\d+%?)?\s*:\s*(-?\d+%?)?\s*\])?\s*$")


def parse_split(split: str) -> tuple[str, tuple[str | None, str | None] | None]:
    """``"train[:90%]"`` -> ``("train", (None, "90%"))``; ``"train"`` -> ``("train", None)``."""
    m = _SPLIT_RE.match(split or "")
    if not m:
        raise DatasetError(
            f"split '{split}' is not understood; use 'train', 'train[:1000]' (frames) or 'train[:90%]' (episodes)"
        )
    name, lo, hi = m.groups()
    if "[" not in split:
        return name, None
    if lo is not None and hi is not None and lo.endswith("%") != hi.endswith("%"):
        raise DatasetError(f"split '{split}' mixes a percentage and a frame count; use one kind")
    return name, (lo, hi)


def _resolve_bound(b: str | None, n: int, default: int) -> int:
    if b is None:
        return default
    v = round(float(b[:-1]) * n / 100) if b.endswith("%") else int(b)
    if v < 0:
        v += n
    return max(0, min(n, v))


# --------------------------------------------------------------------------------------------
# collation
# --------------------------------------------------------------------------------------------
class _BatchList(list):
    """What ``__getitems__`` returns: the per-item dicts (for any collate_fn) plus the batch,
    already stacked, which :func:`collate_batch` returns without copying again."""

    batch: dict[str, Any]


def collate_batch(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack item tensors along a new batch axis; strings (``task``) stay a list of str."""
    if isinstance(items, _BatchList):
        return items.batch
    if not items:
        raise ValueError("cannot collate an empty batch")
    out: dict[str, Any] = {}
    for key in items[0]:
        vals = [it[key] for it in items]
        v0 = vals[0]
        if isinstance(v0, torch.Tensor):
            out[key] = torch.stack(vals)
        elif isinstance(v0, np.ndarray):
            out[key] = torch.from_numpy(np.stack(vals))
        elif isinstance(v0, str):
            out[key] = list(vals)
        elif isinstance(v0, (bool, int, float, np.number)):
            out[key] = torch.tensor(vals)
        else:
            out[key] = list(vals)
    return out


# --------------------------------------------------------------------------------------------
# the dataset
# --------------------------------------------------------------------------------------------
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
        self._cache_path = self._prepare_cache(cache_dir)
        self._arrays: dict[str, np.ndarray] | None = None
        cols = self._load_columns()
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
                f"{_fix_hint(self.root)}"
            )
        if split_bounds is not None:
            lo, hi = split_bounds
            if (lo or hi or "").endswith("%"):
                n = len(selected)
                a, b = _resolve_bound(lo, n, 0), _resolve_bound(hi, n, n)
                keep = set(sorted(selected)[a:b])
                rows = rows[np.isin(self._cols["episode_index"][rows], list(keep))]
            else:
                n = len(rows)
                rows = rows[_resolve_bound(lo, n, 0) : _resolve_bound(hi, n, n)]
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
        """Make sure ``self.root`` holds the dataset: download it from the hub when it is missing."""
        if (self.root / "meta" / "info.json").is_file():
            return
        if self.repo_id.startswith("local/") or self.root.is_file():
            check_dataset_files(self.root)  # raises the precise error
        existed = self.root.exists()
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        try:
            with _quiet():
                LeRobotDataset(self.repo_id, root=self.root, video_backend=video_backend())
        except Exception as e:
            if not existed:  # lerobot made <root>/meta before it failed; leave nothing behind
                for d in (self.root / "meta", self.root):
                    with contextlib.suppress(OSError):
                        d.rmdir()
            raise DatasetError(
                f"dataset '{self.repo_id}' is not found locally at {self.root} and could not be fetched "
                f"from the Hugging Face hub ({_short(e)}); connect to the network or pass root= a local copy"
            ) from None

    def _open_lerobot(self):
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        try:
            with _quiet():
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
            raise DatasetError(f"lerobot could not open {self.root} ({_short(e)}); {_fix_hint(self.root)}") from None

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
    def _prepare_cache(self, cache_dir: str | Path | None) -> Path:
        if cache_dir is not None:  # a shared folder: one sub-folder per dataset root
            tag = hashlib.sha1(str(self.root.resolve()).encode()).hexdigest()[:8]
            base = Path(cache_dir) / f"{self.repo_id.replace('/', '__')}-{tag}"
        else:
            base = self.root / CACHE_DIR
        if not _writable(base):
            from lerobot.utils.constants import HF_LEROBOT_HOME

            fallback = Path(os.environ.get("VLA_CACHE_HOME", Path.home() / ".cache" / "vla_engine"))
            base = fallback / "datasets" / self.repo_id.replace("/", "__")
            if not _writable(base):
                raise DatasetError(
                    f"no writable folder for the frame cache ({self.root / CACHE_DIR}, {base}); "
                    f"pass cache_dir= a writable folder (HF_LEROBOT_HOME={HF_LEROBOT_HOME})"
                )
        fp = _fingerprint(self.root)
        path = base / fp
        # drop caches of earlier versions of these files
        for old in base.iterdir():
            if old.is_dir() and old.name != fp and re.fullmatch(r"[0-9a-f]{16}", old.name):
                shutil.rmtree(old, ignore_errors=True)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _data_files(self) -> list[Path]:
        return sorted((self.root / "data").glob("*/*.parquet"))

    def _load_columns(self) -> dict[str, np.ndarray]:
        """Numeric columns of all frames (state, action, indices), cached in ``columns.npz``."""
        path = self._cache_path / "columns.npz"
        wanted = list(_INDEX_KEYS) + self._numeric_keys
        if path.is_file():
            try:
                with np.load(path) as z:
                    if all(k in z.files for k in wanted):
                        return {k: z[k] for k in wanted}
            except (OSError, ValueError, EOFError):
                pass
        import pyarrow.parquet as pq

        parts: dict[str, list[np.ndarray]] = {k: [] for k in wanted}
        for f in self._data_files():
            try:
                table = pq.read_table(f, columns=wanted)
            except Exception as e:
                raise DatasetError(f"cannot read {f} ({_short(e)}); {_fix_hint(self.root)}") from None
            for k in wanted:
                parts[k].append(_column_to_numpy(table.column(k), self.features.get(k)))
        cols = {k: np.concatenate(v) if v else np.zeros(0) for k, v in parts.items()}
        n = len(cols["index"])
        if not np.array_equal(cols["index"], np.arange(n)):
            raise DatasetError(
                f"the 'index' column of {self.root}/data is not 0..{n - 1} in file order; "
                f"the dataset is inconsistent; {_fix_hint(self.root)}"
            )
        tmp = path.with_name(f"columns.{os.getpid()}.tmp.npz")
        np.savez(tmp, **cols)
        os.replace(tmp, path)
        return cols

    def _frames(self, key: str) -> np.ndarray:
        """The (N, H, W, 3) uint8 memory map of camera ``key``; built on first use."""
        if self._arrays is None:
            self._arrays = {}
        arr = self._arrays.get(key)
        if arr is not None:
            return arr
        path = self._cache_path / f"{key}.npy"
        n = len(self._cols["index"])
        if path.is_file():
            try:
                arr = np.load(path, mmap_mode="r")
                if arr.shape[0] != n or arr.dtype != np.uint8 or arr.ndim != 4:
                    arr = None
            except (OSError, ValueError):
                arr = None
        if arr is None:
            self._build_frame_cache(key, path, n)
            arr = np.load(path, mmap_mode="r")
        self._arrays[key] = arr
        return arr

    def _build_frame_cache(self, key: str, path: Path, n: int) -> None:
        h, w = self._image_hw(key)
        tmp = path.with_name(f"{key}.{os.getpid()}.tmp.npy")
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, h, w, 3))
        try:
            if self.features[key]["dtype"] == "video":
                self._decode_videos(key, out)
            else:
                self._decode_images(key, out)
            out.flush()
        except BaseException:
            del out
            tmp.unlink(missing_ok=True)
            raise
        del out
        os.replace(tmp, path)

    def _image_hw(self, key: str) -> tuple[int, int]:
        ft = self.features[key]
        shape = tuple(ft["shape"])
        names = ft.get("names") or []
        if list(names)[:1] == ["channels"] or (len(shape) == 3 and shape[0] == 3 and shape[2] != 3):
            return int(shape[1]), int(shape[2])
        return int(shape[0]), int(shape[1])

    def _decode_images(self, key: str, out: np.ndarray) -> None:
        import pyarrow.parquet as pq

        log.info("decoding %s frames of %s into %s (once)", key, self.root, out.filename)
        pos = 0
        with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
            for f in self._data_files():
                try:
                    pf = pq.ParquetFile(f)
                    batches = pf.iter_batches(columns=[key], batch_size=256)
                    for batch in batches:
                        col = batch.column(0)
                        blobs = col.field("bytes").to_pylist()
                        paths = col.field("path").to_pylist()
                        imgs = list(pool.map(_decode_png, blobs, paths, [self.root] * len(blobs)))
                        for i, img in enumerate(imgs):
                            if img.shape != out.shape[1:]:
                                raise DatasetError(
                                    f"frame {pos + i} of {key} in {f} has shape {img.shape}, "
                                    f"meta/info.json says {out.shape[1:]}; {_fix_hint(self.root)}"
                                )
                        out[pos : pos + len(imgs)] = np.stack(imgs) if imgs else out[pos:pos]
                        pos += len(imgs)
                except DatasetError:
                    raise
                except Exception as e:
                    raise DatasetError(
                        f"cannot decode the images of {f} ({_short(e)}); {_fix_hint(self.root)}"
                    ) from None
        if pos != out.shape[0]:
            raise DatasetError(f"decoded {pos} frames of {key} but expected {out.shape[0]}; {_fix_hint(self.root)}")

    def _decode_videos(self, key: str, out: np.ndarray) -> None:
        """Decode each mp4 once, in order, and place each frame at its dataset row."""
        import av

        meta = self._lerobot.meta
        ts = self._cols["timestamp"].astype(np.float64)
        tol = 0.5 / self.fps
        by_file: dict[Path, list[tuple[float, int]]] = {}
        for ep in range(int(meta.total_episodes)):
            rec = meta.episodes[ep]
            path = self.root / meta.get_video_file_path(ep, key)
            start = float(rec[f"videos/{key}/from_timestamp"])
            a, b = int(rec["dataset_from_index"]), int(rec["dataset_to_index"])
            by_file.setdefault(path, []).extend((start + float(ts[r]), r) for r in range(a, b))
        log.info("decoding %s videos of %s into %s (once)", key, self.root, out.filename)
        for path, targets in by_file.items():
            if not path.is_file():
                raise DatasetError(f"video file {path} is missing; {_fix_hint(self.root)}")
            targets.sort()
            try:
                with av.open(str(path)) as container:
                    stream = container.streams.video[0]
                    stream.thread_type = "AUTO"
                    frames = ((float(fr.time), fr) for fr in container.decode(stream))
                    prev: tuple[float, Any] | None = None
                    cur = next(frames, None)
                    for t_query, row in targets:
                        while cur is not None and cur[0] <= t_query + 1e-9:
                            prev, cur = cur, next(frames, None)
                        cands = [c for c in (prev, cur) if c is not None]
                        best = min(cands, key=lambda c: abs(c[0] - t_query))
                        if abs(best[0] - t_query) > tol:
                            raise DatasetError(
                                f"video {path} has no frame near t={t_query:.3f}s (closest {best[0]:.3f}s); "
                                f"{_fix_hint(self.root)}"
                            )
                        out[row] = best[1].to_ndarray(format="rgb24")
            except DatasetError:
                raise
            except Exception as e:
                raise DatasetError(f"cannot decode video {path} ({_short(e)}); {_fix_hint(self.root)}") from None

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
                out[key] = _to_float_chw(self._frames(key)[q.reshape(-1)], q.shape)  # (B, D, 3, H, W)
            else:
                out[key] = torch.from_numpy(np.ascontiguousarray(cols[key][q]))  # (B, D, ...)
        for key in self._image_keys:
            if key not in obs_keys:
                out[key] = _to_float_chw(self._frames(key)[abs_idx], None)  # (B, 3, H, W)
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
        items = _BatchList(
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


def _decode_png(blob: bytes | None, path: str | None, root: Path) -> np.ndarray:
    import PIL.Image

    if blob is None:
        if not path:
            raise ValueError("an image cell holds neither bytes nor a path")
        p = Path(path) if Path(path).is_absolute() else root / path
        img = PIL.Image.open(p)
    else:
        img = PIL.Image.open(io.BytesIO(blob))
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img)


def _to_float_chw(frames: np.ndarray, lead: tuple[int, ...] | None) -> torch.Tensor:
    """uint8 (M, H, W, 3) -> float32 (M, 3, H, W) / 255, optionally reshaped to (*lead, 3, H, W).

    Same arithmetic as torchvision's ``ToTensor`` (float, then divide by 255), so bit-identical to
    what lerobot returns. Done in numpy: single-threaded, so it never contends with torch's
    intra-op thread pool that the model uses in the same process."""
    m, h, w, c = frames.shape
    out = np.empty((m, c, h, w), dtype=np.float32)  # (M, 3, H, W)
    np.copyto(out, frames.transpose(0, 3, 1, 2), casting="unsafe")
    np.divide(out, np.float32(255), out=out)
    t = torch.from_numpy(out)
    if lead is not None:
        t = t.reshape(*lead, c, h, w)
    return t


def _column_to_numpy(col: Any, feature: dict | None) -> np.ndarray:
    """A pyarrow column (scalars or fixed-size lists) -> numpy (N,) or (N, *shape)."""
    import pyarrow as pa

    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if isinstance(arr.type, pa.ExtensionType):  # datasets' Array2D (e.g. action.plan): lists of lists
        arr = arr.storage
    n = len(arr)
    if pa.types.is_list(arr.type) or pa.types.is_fixed_size_list(arr.type) or pa.types.is_large_list(arr.type):
        flat = arr.flatten()
        while pa.types.is_list(flat.type) or pa.types.is_fixed_size_list(flat.type):
            flat = flat.flatten()
        values = flat.to_numpy(zero_copy_only=False)
        shape = tuple(feature["shape"]) if feature else (-1,)
        return values.reshape(n, *shape) if n else values.reshape(0, *shape)
    values = arr.to_numpy(zero_copy_only=False)
    if feature is not None and tuple(feature.get("shape", ())) not in ((1,), ()) and values.ndim == 1:
        values = values.reshape(n, *feature["shape"])
    return values


@contextlib.contextmanager
def _quiet():
    """Silence the `datasets` progress bars lerobot triggers while opening a dataset."""
    import datasets

    was = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was:
            datasets.enable_progress_bars()


class PushTDataset(LeRobotVLADataset):
    """LeRobot's PushT demonstrations (hub dataset ``lerobot/pusht``: 206 episodes, 96x96 camera
    ``observation.image``, 2-D state and action, 10 fps).

    Needs the files locally (``root``, default ``$HF_LEROBOT_HOME/lerobot/pusht``) or a network to
    the Hugging Face hub; without either it stops with one line naming the root.
    """

    REPO_ID = "lerobot/pusht"

    def __init__(self, split: str = "train", root: str | Path | None = None, **kw: Any) -> None:
        super().__init__(self.REPO_ID, root=root, split=split, **kw)


def create_lerobot_dataloader(
    dataset: torch.utils.data.Dataset,
    batch_size: int = 64,
    shuffle: bool = True,
    num_workers: int = 0,
    drop_last: bool = True,
    seed: int | None = None,
) -> torch.utils.data.DataLoader:
    """A DataLoader over a :class:`LeRobotVLADataset` (or lerobot's ``LeRobotDataset``).

    Tensors are stacked along a batch axis, ``task`` stays a list of str. ``drop_last`` is ignored
    when the dataset is smaller than one batch (so a tiny dataset still yields a batch). ``seed``
    fixes the shuffling order.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    if isinstance(dataset, LeRobotVLADataset):
        dataset.build_cache()  # decode in the main process once, not in every worker
    generator = None
    if seed is not None:
        generator = torch.Generator()
        generator.manual_seed(int(seed))
    n = len(dataset)  # type: ignore[arg-type]
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        drop_last=drop_last and n >= batch_size,
        collate_fn=collate_batch,
        generator=generator,
        persistent_workers=num_workers > 0,
        pin_memory=torch.cuda.is_available(),
    )


def build_datasets(
    cfg: "DatasetConfig", progress: bool = True, on_episode: Callable[[int, int], None] | None = None
) -> tuple[LeRobotVLADataset, LeRobotVLADataset | None]:
    """Train (and validation, when ``cfg.val_fraction > 0``) datasets from a DatasetConfig.

    When ``cfg.root`` holds no dataset and ``cfg.task`` names a built-in task, the data is
    generated first with the task's scripted expert (``cfg.episodes`` episodes, seeds 0, 1, ...).
    The validation split holds the last ``val_fraction`` of the episodes.
    """
    root = Path(cfg.root) if cfg.root is not None else None
    if root is not None and not (root / "meta" / "info.json").is_file() and cfg.task is not None:
        if root.exists() and any(root.iterdir()):
            check_dataset_files(root)  # something is there but broken: say what
        from .datagen import generate_dataset

        generate_dataset(
            cfg.task, cfg.episodes, root, image_size=cfg.image_size, repo_id=cfg.repo_id, progress=progress,
            on_episode=on_episode, action_noise=cfg.action_noise, targets_per_layout=cfg.targets_per_layout,
            plan_horizon=cfg.plan_horizon,
        )
    kw = dict(n_obs_steps=cfg.n_obs_steps, chunk_size=cfg.chunk_size, chunk_labels=cfg.chunk_labels)
    if cfg.val_fraction <= 0:
        return LeRobotVLADataset(cfg.repo_id, root=root, **kw), None
    pct = 100.0 * (1.0 - cfg.val_fraction)
    train = LeRobotVLADataset(cfg.repo_id, root=root, split=f"train[:{pct:g}%]", **kw)
    val = LeRobotVLADataset(cfg.repo_id, root=root, split=f"train[{pct:g}%:]", **kw)
    if len(val) == 0 or len(train) == 0:
        raise DatasetError(
            f"dataset.val_fraction={cfg.val_fraction} leaves an empty split of {train.root} "
            f"({train.num_episodes + val.num_episodes} episodes); lower it or generate more episodes"
        )
    return train, val
