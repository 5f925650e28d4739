"""The app's shared context: one job runner, the runs and datasets folders, the registries.

Every path the UI touches goes through this object, which resolves user-given names (runs,
datasets, checkpoints, presets) strictly inside ``runs_dir`` / ``datasets_dir``: a name that tries
to escape them (``../x``, ``/etc``) is rejected with a one-line error.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .watch import WatchCache

log = logging.getLogger("vla_app")

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
USER_PRESET_PREFIX = "user/"


class AppError(ValueError):
    """A user-facing problem in the app (bad name, missing run, ...). One-line message."""


def check_name(name: str, what: str = "name") -> str:
    """``name`` if it is a plain folder name (letters, digits, '.', '_', '-'; no paths), else AppError."""
    name = (name or "").strip()
    if not _NAME_RE.match(name) or ".." in name:
        raise AppError(f"{what} {name!r} is not allowed; use letters, digits, '.', '_' and '-' (no paths)")
    return name


def inside(path: Path, root: Path) -> Path:
    """``path`` resolved, if it lies inside ``root``; AppError otherwise."""
    p, r = Path(path).resolve(), Path(root).resolve()
    if p != r and r not in p.parents:
        raise AppError(f"{path} lies outside {root}; the app only reads and writes there")
    return p


def _within(path: Path, root: Path) -> bool:
    try:
        inside(path, root)
        return True
    except AppError:
        return False


def user_message(e: BaseException) -> str:
    """A one-line message for the user. Expected errors (ValueError family, KeyError from a registry,
    OSError) give their own first line; anything else is logged with its traceback on the server."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if isinstance(e, KeyError) and text.startswith("'") and text.endswith("'"):
        text = text[1:-1]
    expected = (ValueError, KeyError, OSError, RuntimeError, TypeError)
    if isinstance(e, expected):
        log.info("user error: %s", text)
        if isinstance(e, (TypeError, RuntimeError)) and type(e).__module__ == "builtins":
            log.warning("%s", "".join(traceback.format_exception(e)))
        return text
    log.error("unexpected error: %s", "".join(traceback.format_exception(e)))
    return f"unexpected {type(e).__name__}: {text} (details in the server log)"


@dataclass
class AppContext:
    """What every tab shares. Build one per app process with :meth:`create`."""

    runs_dir: Path
    datasets_dir: Path
    runner: Any  # vla_engine.runs.runner.JobRunner
    cpu_only: bool = False
    shared: bool = False  # a public demo (Space): no pretrained weights from arbitrary server folders
    extras: dict[str, Any] = field(default_factory=dict)  # per-process services (benchmark queue, watches)
    lock: Any = field(default_factory=threading.RLock)

    @classmethod
    def create(cls, runs_dir: str | Path = "runs", datasets_dir: str | Path = "datasets",
               max_concurrent: int | None = None, cpu_only: bool = False,
               shared: bool = False) -> "AppContext":
        from vla_engine.runs.runner import JobRunner

        runs = Path(runs_dir).expanduser().resolve()
        data = Path(datasets_dir).expanduser().resolve()
        runs.mkdir(parents=True, exist_ok=True)
        data.mkdir(parents=True, exist_ok=True)
        if max_concurrent is not None and max_concurrent <= 0:
            max_concurrent = None
        return cls(runs_dir=runs, datasets_dir=data, runner=JobRunner(runs, max_concurrent=max_concurrent),
                   cpu_only=cpu_only, shared=shared)

    def check_model_paths(self, model: dict) -> dict:
        """On a shared demo, pretrained-weight folders must lie in runs_dir or datasets_dir."""
        if self.shared:
            from vla_engine.config.model_config import ModelConfig

            try:  # every folder / hub id the config names, the parts' settings included
                refs = ModelConfig.from_dict(model).pretrained_refs()
            except ValueError as e:
                raise AppError(str(e).splitlines()[0]) from None
            for key, v in refs.items():
                if v:
                    p = Path(str(v))
                    if not any(_within(p, r) for r in (self.runs_dir, self.datasets_dir)):
                        raise AppError(f"model.{key}: on this shared demo, pretrained weights must be a folder in "
                                       f"{self.runs_dir} or {self.datasets_dir}; leave it empty to train from scratch")
        return model

    # -- registries -------------------------------------------------------------------------
    @property
    def registries(self) -> dict[str, Any]:
        import vla_engine.envs  # noqa: F401  (registers the built-in tasks)
        import vla_engine.models  # noqa: F401  (registers the model parts)
        import vla_engine.train.methods  # noqa: F401  (registers the trainers)
        from vla_engine import registry as R

        return {"tasks": R.TASKS, "vision_encoders": R.VISION_ENCODERS, "projectors": R.PROJECTORS,
                "language_models": R.LANGUAGE_MODELS, "action_heads": R.ACTION_HEADS, "trainers": R.TRAINERS}

    def task_names(self, with_expert: bool = False) -> list[str]:
        """Every registered task, or those a scripted expert can demonstrate (what the Datasets tab generates)."""
        tasks = self.registries["tasks"]
        names = tasks.names()
        if with_expert:
            names = [t for t in names if tasks.meta(t, load=False).get("has_expert", True)]
        return names

    def task_groups(self) -> dict[str, list[str]]:
        """Tasks by family (tabletop, gym, metaworld, driving) and the benchmark suites (Meta-World MT10 / MT50)."""
        tasks = self.registries["tasks"]
        groups: dict[str, list[str]] = {}
        for t in tasks.names():
            groups.setdefault(tasks.meta(t, load=False).get("family") or "tabletop", []).append(t)
        try:
            from vla_engine.envs.metaworld_tasks import SUITES
        except ImportError:  # the Meta-World family is not in this version
            SUITES = {}
        for suite in SUITES:
            groups[f"metaworld/{suite}"] = [f"metaworld/{name}" if "/" not in name else name
                                            for name in SUITES[suite]]
        return groups

    # -- runs -------------------------------------------------------------------------------
    def run(self, run_id: str):
        """The RunDir of ``run_id`` (validated name, existing run inside runs_dir)."""
        rid = check_name(run_id, "run")
        inside(self.runs_dir / rid, self.runs_dir)
        return self.runner.get(rid)

    def list_runs(self, job: str | None = None) -> list:
        """RunInfo of every run (oldest first), or of one job kind."""
        return self.runner.list_runs(job)

    def start_job(self, job: str, config: dict, name: str) -> str:
        """Start a background job (train, eval, datagen) through the job runner; its run id."""
        return self.runner.start(job, config, name=name)

    def watch(self, run_id: str):
        """The shared :class:`~app.watch.RunWatch` of a run (validated name, existing run in runs_dir)."""
        rid = check_name(run_id, "run")
        inside(self.runs_dir / rid, self.runs_dir)
        return self._service("watches", lambda: WatchCache(self.runner)).get(rid)

    def _service(self, key: str, make: Any) -> Any:
        """A per-process object in ``extras``, made on first use."""
        with self.lock:
            obj = self.extras.get(key)
            if obj is None:
                obj = self.extras[key] = make()
            return obj

    @property
    def user_presets_dir(self) -> Path:
        # '_' cannot start a run id, so this folder never clashes with a run
        return self.runs_dir / "_presets"

    @property
    def leaderboard(self):
        """The runs folder's :class:`~vla_engine.eval.leaderboard.Leaderboard`."""
        from vla_engine.eval.leaderboard import Leaderboard

        return self._service("leaderboard", lambda: Leaderboard.of(self.runs_dir))

    @property
    def benchmark_queue(self):
        """The process's :class:`~vla_engine.eval.benchmark_queue.BenchmarkQueue` (eval jobs one at a time)."""
        from vla_engine.eval.benchmark_queue import BenchmarkQueue

        return self._service("benchmark_queue", lambda: BenchmarkQueue(self.runner, self.leaderboard,
                                                                       on_error=user_message))

    # -- checkpoints ------------------------------------------------------------------------
    def checkpoint_choices(self) -> list[tuple[str, str]]:
        """(label, ref) of every train run with a checkpoint: the latest (``run``) and each (``run/step-N``)."""
        out: list[tuple[str, str]] = []
        for r in reversed(self.list_runs("train")):
            try:
                run = self.run(r.run_id)
            except ValueError:
                continue
            cps = run.checkpoints()
            if not cps:
                continue
            out.append((f"{r.run_id} (latest: {cps[-1].name}, {r.status.state})", r.run_id))
            for cp in reversed(cps[:-1]):
                out.append((f"{r.run_id} / {cp.name}", f"{r.run_id}/{cp.name}"))
        from vla_engine.pretrained import PREFIX, list_shipped

        for s in list_shipped():  # bundled with the package: usable on a fresh start
            sr = s.get("success_rate")
            note = f", {sr:.0%} success" if isinstance(sr, (int, float)) else ""
            out.append((f"{PREFIX}{s['name']} (shipped, {s.get('task')}{note})", f"{PREFIX}{s['name']}"))
        return out

    def resolve_checkpoint(self, ref: str) -> Path:
        """A checkpoint folder from ``run_id`` (its latest) or ``run_id/step-N``, inside runs_dir."""
        ref = (ref or "").strip()
        if not ref:
            raise AppError("no checkpoint chosen; pick a trained run (train one in the Training tab first)")
        from vla_engine.pretrained import is_shipped_ref, shipped_checkpoint

        if is_shipped_ref(ref):
            try:
                return shipped_checkpoint(ref)
            except FileNotFoundError as e:
                raise AppError(str(e)) from None
        parts = ref.split("/")
        if len(parts) > 2:
            raise AppError(f"checkpoint {ref!r} is not a run or run/step-N")
        run = self.run(parts[0])
        if len(parts) == 1:
            last = run.last_checkpoint()
            if last is None:
                raise AppError(f"run {parts[0]} has no checkpoint yet; wait for its first save")
            return inside(last, self.runs_dir)
        step = check_name(parts[1], "checkpoint")
        path = inside(run.checkpoints_dir / step, self.runs_dir)
        if not (path / "model.safetensors").exists():
            have = ", ".join(p.name for p in run.checkpoints()) or "none"
            raise AppError(f"run {parts[0]} has no checkpoint {step!r}; it has: {have}")
        return path

    # -- datasets ---------------------------------------------------------------------------
    def dataset_root(self, name: str) -> Path:
        """The folder of dataset ``name`` inside datasets_dir (it may not exist yet)."""
        n = check_name(name, "dataset name")
        return inside(self.datasets_dir / n, self.datasets_dir)

    def list_datasets(self) -> list[dict]:
        """Local LeRobot datasets under datasets_dir (from their meta files; cheap)."""
        out = []
        if not self.datasets_dir.exists():
            return out
        for p in sorted(self.datasets_dir.iterdir()):
            info_path = p / "meta" / "info.json"
            if not p.is_dir() or not _NAME_RE.match(p.name) or not info_path.is_file():
                continue
            try:
                info = json.loads(info_path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            side = {}
            side_path = p / "meta" / "vla_engine.json"
            if side_path.is_file():
                try:
                    side = json.loads(side_path.read_text())
                except (OSError, json.JSONDecodeError):
                    side = {}
            feats = info.get("features", {})
            out.append({
                "name": p.name, "path": str(p), "episodes": info.get("total_episodes"),
                "frames": info.get("total_frames"), "fps": info.get("fps"), "task": side.get("task"),
                "action_dim": (feats.get("action", {}).get("shape") or [None])[0],
                "state_dim": (feats.get("observation.state", {}).get("shape") or [0])[0],
                "repo_id": side.get("repo_id") or f"local/{p.name}",
            })
        return out

    def dataset_writer(self, root: Path) -> str | None:
        """The active job (run id) that is writing dataset folder ``root``, if any."""
        root = Path(root).resolve()
        for r in self.list_runs():
            if not r.status.active:
                continue
            try:
                cfg = self.runner.get(r.run_id).read_config()
            except ValueError:
                continue
            target = cfg.get("out") if r.job == "datagen" else (cfg.get("dataset") or {}).get("root")
            if target and Path(str(target)).resolve() == root and (
                    r.job == "datagen" or not (root / "meta" / "info.json").exists()):
                return r.run_id
        return None

    def list_minari_datasets(self) -> list[dict]:
        """Minari datasets under datasets_dir/minari (where `vla datagen --format minari` and minari_io write),
        named ``minari:<dataset id>``; the Datasets tab lists them next to the LeRobot folders."""
        from vla_engine.data.minari_browse import list_minari_datasets

        return list_minari_datasets(self.datasets_dir / "minari")

    def dataset_entry(self, name: str) -> dict | None:
        root = self.dataset_root(name)
        for d in self.list_datasets():
            if Path(d["path"]).resolve() == root:
                return d
        return None

    def open_dataset(self, name: str):
        """The LeRobotVLADataset of local dataset ``name`` (cached while its files do not change); for a name
        ``minari:<id>``, a MinariEpisodes view of that Minari dataset with the same browsing attributes."""
        from vla_engine.data import LeRobotVLADataset
        from vla_engine.data.minari_browse import PREFIX, MinariEpisodes

        if (name or "").startswith(PREFIX):
            entry = next((d for d in self.list_minari_datasets() if d["name"] == name), None)
            if entry is None:
                raise AppError(f"no Minari dataset {name[len(PREFIX):]!r} in {self.datasets_dir / 'minari'}; make "
                               f"one with `vla datagen --format minari`")
            meta = Path(entry["path"]) / "data" / "metadata.json"
            key = (entry["path"], meta.stat().st_mtime)
            cache = self.extras.setdefault("datasets", {})
            with self.lock:
                ds = cache.get(key)
            if ds is None:
                ds = MinariEpisodes(entry["path"])
                with self.lock:
                    cache[key] = ds
            return ds
        root = self.dataset_root(name)
        info = root / "meta" / "info.json"
        if not info.is_file():
            raise AppError(f"no dataset named {name!r} in {self.datasets_dir}; generate it in the Datasets tab")
        key = (str(root), info.stat().st_mtime)
        cache = self.extras.setdefault("datasets", {})
        with self.lock:
            ds = cache.get(key)
        if ds is None:
            entry = self.dataset_entry(name) or {}
            ds = LeRobotVLADataset(entry.get("repo_id") or f"local/{name}", root=root)
            with self.lock:
                for k in [k for k in cache if k[0] == key[0]]:
                    cache.pop(k)
                cache[key] = ds
        return ds

    # -- presets ----------------------------------------------------------------------------
    def preset_choices(self) -> list[tuple[str, str]]:
        from vla_engine.config.presets import list_presets, load_preset_dict
        from vla_engine.train.methods import PLANNED_METHODS

        out = []
        for p in list_presets():
            try:  # a preset whose method is not built yet still shows (it validates), marked as such
                planned = load_preset_dict(p).get("method") in PLANNED_METHODS
            except Exception:  # noqa: BLE001 - a broken preset file is reported when it is chosen
                planned = False
            out.append((f"{p} (not built yet)" if planned else p, p))
        if self.user_presets_dir.exists():
            for f in sorted(self.user_presets_dir.glob("*.yaml")):
                if _NAME_RE.match(f.stem):
                    out.append((f"{USER_PRESET_PREFIX}{f.stem} (saved)", f"{USER_PRESET_PREFIX}{f.stem}"))
        return out

    def preset_dict(self, preset: str) -> dict:
        """The run-config dict of a built-in preset (by name) or a saved user preset (``user/<name>``).

        Nothing else is read: a file name or path (``other.yaml``, ``../x.yaml``) is refused, so the preset
        box never reads a file outside the preset folders."""
        from vla_engine.config.presets import PRESETS_DIR, list_presets, load_preset_dict

        preset = (preset or "").strip()
        if preset.startswith(USER_PRESET_PREFIX):
            name = check_name(preset[len(USER_PRESET_PREFIX):], "preset")
            path = inside(self.user_presets_dir / f"{name}.yaml", self.user_presets_dir)
            if not path.exists():
                raise AppError(f"no saved preset {name!r}; save one in the Model builder tab")
            return load_preset_dict(path)
        names = list_presets()
        if preset not in names:
            raise AppError(f"{preset!r} is not a preset; choose one of: {', '.join(names)}, or a saved "
                           f"{USER_PRESET_PREFIX}<name>")
        return load_preset_dict(inside(PRESETS_DIR / f"{preset}.yaml", PRESETS_DIR))
