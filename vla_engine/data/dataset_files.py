"""Checks of a LeRobot v3 dataset's files, the one-line errors that name the fix, split parsing.

:func:`check_dataset_files` walks a dataset folder before lerobot opens it, so a missing or corrupt
file is reported by name (lerobot itself would try to fetch a missing file from the hub and report
a connection error instead).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .lerobot_io import DatasetError, read_sidecar


def fix_hint(root: Path) -> str:
    """The command that rebuilds the dataset at ``root`` (from its sidecar when there is one)."""
    side = read_sidecar(root) if root.is_dir() else None
    if side and side.get("task"):
        n = side.get("episodes_requested") or side.get("num_episodes") or 200
        size = side.get("image_size", 96)
        return (
            f"regenerate it with `vla datagen --task {side['task']} --episodes {n} "
            f"--image-size {size} --out {root} --overwrite`"
        )
    return f"regenerate it with `vla datagen --task <task> --out {root} --overwrite`, or re-download it"


def short_error(e: BaseException) -> str:
    """``"TypeName: first line of the message"``, cut to fit in a one-line error."""
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:160]}" if text else type(e).__name__


def check_parquet(path: Path, root: Path) -> int:
    """Number of rows of a parquet file; DatasetError when it is truncated or not parquet."""
    import pyarrow.parquet as pq

    try:
        return pq.read_metadata(path).num_rows
    except Exception as e:  # ArrowInvalid, OSError, ...: a truncated or corrupt file
        raise DatasetError(
            f"corrupt or truncated parquet file {path} ({short_error(e)}); {fix_hint(root)}"
        ) from None


def check_dataset_files(root: str | Path) -> dict:
    """Check that ``root`` holds a complete LeRobot v3 dataset; return its ``meta/info.json``.

    Raises DatasetError naming the first missing or corrupt file and the fix.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist; {fix_hint(root)}")
    info_path = root / "meta" / "info.json"
    if not info_path.is_file():
        raise DatasetError(
            f"{root} is not a LeRobot dataset: {info_path} is missing; {fix_hint(root)}"
        )
    try:
        info = json.loads(info_path.read_text())
        features = info["features"]
        total_frames = int(info["total_frames"])
        version = str(info.get("codebase_version", ""))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DatasetError(f"unreadable dataset meta file {info_path} ({short_error(e)}); {fix_hint(root)}") from None
    if not version.startswith("v3"):
        raise DatasetError(
            f"{root} is a LeRobot {version or 'unknown-version'} dataset; this reader needs v3.0 "
            "(convert it with lerobot's lerobot/datasets/v30/convert_dataset_v21_to_v30.py)"
        )
    tasks = root / "meta" / "tasks.parquet"
    if not tasks.is_file():
        raise DatasetError(f"dataset meta file {tasks} is missing; {fix_hint(root)}")
    check_parquet(tasks, root)
    ep_files = sorted((root / "meta" / "episodes").glob("*/*.parquet"))
    if not ep_files:
        raise DatasetError(
            f"dataset meta files {root / 'meta' / 'episodes'}/chunk-*/file-*.parquet are missing; {fix_hint(root)}"
        )
    for p in ep_files:
        check_parquet(p, root)
    data_files = sorted((root / "data").glob("*/*.parquet"))
    if not data_files:
        raise DatasetError(f"no data files in {root / 'data'} (chunk-*/file-*.parquet); {fix_hint(root)}")
    rows = sum(check_parquet(p, root) for p in data_files)
    if rows != total_frames:
        raise DatasetError(
            f"incomplete dataset {root}: the data files hold {rows} frames but meta/info.json says "
            f"{total_frames}; {fix_hint(root)}"
        )
    video_keys = [key for key, ft in features.items() if ft.get("dtype") == "video"]
    for key in video_keys:
        if not (root / "videos" / key).is_dir():
            raise DatasetError(f"video folder {root / 'videos' / key} is missing; {fix_hint(root)}")
    if video_keys:
        _check_video_files(root, info, video_keys, ep_files)
    return info


def _check_video_files(root: Path, info: dict, video_keys: list[str], ep_files: list[Path]) -> None:
    """Every mp4 that meta/episodes points to must exist (lerobot would try the hub for it)."""
    import pyarrow.parquet as pq

    template = str(info.get("video_path") or "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4")
    for key in video_keys:
        wanted = [f"videos/{key}/chunk_index", f"videos/{key}/file_index"]
        files: set[tuple[int, int]] = set()
        for p in ep_files:
            try:
                table = pq.read_table(p, columns=wanted)
            except Exception as e:  # the columns are missing: lerobot cannot locate the videos either
                raise DatasetError(
                    f"dataset meta file {p} does not locate the videos of {key} ({short_error(e)}); {fix_hint(root)}"
                ) from None
            chunks, indices = (table.column(c).to_pylist() for c in wanted)
            files.update(zip(chunks, indices))
        for chunk, index in sorted(files):
            path = root / template.format(video_key=key, chunk_index=int(chunk), file_index=int(index))
            if not path.is_file():
                raise DatasetError(f"video file {path} of the dataset is missing; {fix_hint(root)}")


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


def resolve_bound(b: str | None, n: int, default: int) -> int:
    """One bound of a split ("90%", "-100", None) as an index into ``n`` items, clamped to [0, n]."""
    if b is None:
        return default
    v = round(float(b[:-1]) * n / 100) if b.endswith("%") else int(b)
    if v < 0:
        v += n
    return max(0, min(n, v))
