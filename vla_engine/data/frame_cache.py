"""The decode-once cache of a dataset: numeric columns in ``columns.npz``, each camera in ``<key>.npy``.

Every camera frame is decoded ONCE (PNG cells of the parquet files, or the mp4s) into a uint8
``(N, H, W, 3)`` array that the dataset then indexes as a memory map, so training never decodes a
frame again. The cache lives under ``<root>/.vla_cache/<fingerprint>/``; the fingerprint covers the
dataset's files (path, size, mtime), so a regenerated dataset rebuilds its cache and an unchanged
one reuses it across runs and DataLoader workers. Files are written under a temporary name and
renamed into place, so an interrupted build leaves no half-written cache.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .dataset_files import fix_hint, short_error
from .lerobot_io import CACHE_DIR, DatasetError

log = logging.getLogger(__name__)

CACHE_VERSION = "1"


# --------------------------------------------------------------------------------------------
# the cache folder
# --------------------------------------------------------------------------------------------
def fingerprint(root: Path) -> str:
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


def cache_folder(root: Path, repo_id: str, cache_dir: str | Path | None) -> Path:
    """The cache folder of the dataset at ``root`` in its current version, created; older ones removed.

    ``cache_dir`` None means ``<root>/.vla_cache``; a read-only root falls back to
    ``$VLA_CACHE_HOME`` (default ``~/.cache/vla_engine``).
    """
    if cache_dir is not None:  # a shared folder: one sub-folder per dataset root
        tag = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:8]
        base = Path(cache_dir) / f"{repo_id.replace('/', '__')}-{tag}"
    else:
        base = root / CACHE_DIR
    if not _writable(base):
        fallback = Path(os.environ.get("VLA_CACHE_HOME", Path.home() / ".cache" / "vla_engine"))
        base = fallback / "datasets" / repo_id.replace("/", "__")
        if not _writable(base):
            raise DatasetError(
                f"no writable folder for the frame cache ({root / CACHE_DIR}, {base}); "
                "pass cache_dir= a writable folder"
            )
    fp = fingerprint(root)
    path = base / fp
    # drop caches of earlier versions of these files
    for old in base.iterdir():
        if old.is_dir() and old.name != fp and re.fullmatch(r"[0-9a-f]{16}", old.name):
            shutil.rmtree(old, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_files(root: Path) -> list[Path]:
    """The dataset's ``data/chunk-*/file-*.parquet`` files in order."""
    return sorted((root / "data").glob("*/*.parquet"))


# --------------------------------------------------------------------------------------------
# numeric columns
# --------------------------------------------------------------------------------------------
def load_columns(cache_path: Path, root: Path, wanted: list[str], features: dict[str, dict]) -> dict[str, np.ndarray]:
    """Columns ``wanted`` of all frames (state, action, indices), cached in ``columns.npz``."""
    path = cache_path / "columns.npz"
    if path.is_file():
        try:
            with np.load(path) as z:
                if all(k in z.files for k in wanted):
                    return {k: z[k] for k in wanted}
        except (OSError, ValueError, EOFError):
            pass
    import pyarrow.parquet as pq

    parts: dict[str, list[np.ndarray]] = {k: [] for k in wanted}
    for f in data_files(root):
        try:
            table = pq.read_table(f, columns=wanted)
        except Exception as e:
            raise DatasetError(f"cannot read {f} ({short_error(e)}); {fix_hint(root)}") from None
        for k in wanted:
            parts[k].append(column_to_numpy(table.column(k), features.get(k)))
    cols = {k: np.concatenate(v) if v else np.zeros(0) for k, v in parts.items()}
    n = len(cols["index"])
    if not np.array_equal(cols["index"], np.arange(n)):
        raise DatasetError(
            f"the 'index' column of {root}/data is not 0..{n - 1} in file order; "
            f"the dataset is inconsistent; {fix_hint(root)}"
        )
    tmp = path.with_name(f"columns.{os.getpid()}.tmp.npz")
    np.savez(tmp, **cols)
    os.replace(tmp, path)
    return cols


def column_to_numpy(col: Any, feature: dict | None) -> np.ndarray:
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


# --------------------------------------------------------------------------------------------
# camera frames
# --------------------------------------------------------------------------------------------
def image_hw(feature: dict) -> tuple[int, int]:
    """(H, W) of an image/video feature, whether its shape is (H, W, 3) or (3, H, W)."""
    shape = tuple(feature["shape"])
    names = feature.get("names") or []
    if list(names)[:1] == ["channels"] or (len(shape) == 3 and shape[0] == 3 and shape[2] != 3):
        return int(shape[1]), int(shape[2])
    return int(shape[0]), int(shape[1])


def open_frames(
    cache_path: Path, key: str, n: int, hw: tuple[int, int], decode: Callable[[np.ndarray], None]
) -> np.ndarray:
    """The (N, H, W, 3) uint8 memory map of camera ``key``; ``decode(out)`` fills it when absent or stale."""
    path = cache_path / f"{key}.npy"
    if path.is_file():
        try:
            arr = np.load(path, mmap_mode="r")
            if arr.shape[0] == n and arr.dtype == np.uint8 and arr.ndim == 4:
                return arr
        except (OSError, ValueError):
            pass
    h, w = hw
    tmp = path.with_name(f"{key}.{os.getpid()}.tmp.npy")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, h, w, 3))
    done = False
    try:
        decode(out)
        out.flush()
        done = True
    finally:
        del out  # closes the memory map before the file is renamed or removed
        if not done:
            tmp.unlink(missing_ok=True)
    os.replace(tmp, path)
    return np.load(path, mmap_mode="r")


def decode_images(root: Path, key: str, out: np.ndarray) -> None:
    """Decode the PNG cells of column ``key`` of every data file into ``out`` (N, H, W, 3), in order."""
    import pyarrow.parquet as pq

    log.info("decoding %s frames of %s into %s (once)", key, root, getattr(out, "filename", "memory"))
    pos = 0
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        for f in data_files(root):
            try:
                pf = pq.ParquetFile(f)
                for batch in pf.iter_batches(columns=[key], batch_size=256):
                    col = batch.column(0)
                    blobs = col.field("bytes").to_pylist()
                    paths = col.field("path").to_pylist()
                    imgs = list(pool.map(decode_png, blobs, paths, [root] * len(blobs)))
                    for i, img in enumerate(imgs):
                        if img.shape != out.shape[1:]:
                            raise DatasetError(
                                f"frame {pos + i} of {key} in {f} has shape {img.shape}, "
                                f"meta/info.json says {out.shape[1:]}; {fix_hint(root)}"
                            )
                    out[pos : pos + len(imgs)] = np.stack(imgs) if imgs else out[pos:pos]
                    pos += len(imgs)
            except DatasetError:
                raise
            except Exception as e:
                raise DatasetError(f"cannot decode the images of {f} ({short_error(e)}); {fix_hint(root)}") from None
    if pos != out.shape[0]:
        raise DatasetError(f"decoded {pos} frames of {key} but expected {out.shape[0]}; {fix_hint(root)}")


def decode_videos(root: Path, key: str, out: np.ndarray, meta: Any, timestamps: np.ndarray, fps: int) -> None:
    """Decode each mp4 of camera ``key`` once, in order, and place each frame at its dataset row.

    ``meta`` is lerobot's ``LeRobotDatasetMetadata`` (episode rows and video file paths);
    ``timestamps`` (N,) the per-frame ``timestamp`` column. A frame farther than half a frame
    period from its timestamp is an error, not a silent neighbour.
    """
    import av

    ts = timestamps.astype(np.float64)
    tol = 0.5 / fps
    by_file: dict[Path, list[tuple[float, int]]] = {}
    for ep in range(int(meta.total_episodes)):
        rec = meta.episodes[ep]
        path = root / meta.get_video_file_path(ep, key)
        start = float(rec[f"videos/{key}/from_timestamp"])
        a, b = int(rec["dataset_from_index"]), int(rec["dataset_to_index"])
        by_file.setdefault(path, []).extend((start + float(ts[r]), r) for r in range(a, b))
    log.info("decoding %s videos of %s into %s (once)", key, root, getattr(out, "filename", "memory"))
    for path, targets in by_file.items():
        if not path.is_file():
            raise DatasetError(f"video file {path} of the dataset is missing; {fix_hint(root)}")
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
                            f"{fix_hint(root)}"
                        )
                    out[row] = best[1].to_ndarray(format="rgb24")
        except DatasetError:
            raise
        except Exception as e:
            raise DatasetError(f"cannot decode video {path} ({short_error(e)}); {fix_hint(root)}") from None


def decode_png(blob: bytes | None, path: str | None, root: Path) -> np.ndarray:
    """One image cell (PNG bytes, or a path relative to ``root``) -> uint8 (H, W, 3)."""
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


def to_float_chw(frames: np.ndarray, lead: tuple[int, ...] | None) -> torch.Tensor:
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
