"""Minari datasets seen the way the workbench browses LeRobot ones: listed with their sizes and levels, and
opened episode by episode (state, action, reward, camera frames when the observations hold ``pixels``).

    list_minari_datasets("datasets/minari")   -> [{"name": "minari:vla/hopper/expert-v0", "episodes": 50, ...}]
    ds = MinariEpisodes("vla/hopper/expert-v0", root="datasets/minari")
    ds.episode_data(0)     -> {"observation.state": (T, S), "action": (T, A), "next.reward": (T,), "task": ...}
    ds.episode_frames(0)   -> (T, H, W, 3) uint8, or an empty (0, 1, 1, 3) array for state-only data

The same attribute names as ``LeRobotVLADataset`` (``num_episodes``, ``stats``, ``episode_indices`` ...), so a
browser or a script reads either kind with one code path. Reading goes through minari's own ``MinariDataset``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .lerobot_io import ACTION_KEY, IMAGE_KEY, STATE_KEY  # lerobot_io itself imports only numpy

# light on import (the app reads PREFIX at start-up): the readers load with their first use
PREFIX = "minari:"
  # a Minari dataset's name in lists next to LeRobot folders: "minari:<dataset id>"


def list_minari_datasets(root: str | Path | None = None) -> list[dict[str, Any]]:
    """Every Minari dataset under ``root`` (default: minari's own root), from its metadata.json only (cheap)."""
    from .bc_datasets import minari_root

    base = minari_root(root)
    out: list[dict[str, Any]] = []
    if not base.is_dir():
        return out
    for meta_path in sorted(base.glob("**/data/metadata.json")):
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        did = meta.get("dataset_id") or str(meta_path.parent.parent.relative_to(base))
        action_dim, state_dim = _space_dim(meta.get("action_space")), _space_dim(meta.get("observation_space"))
        out.append({"name": PREFIX + did, "dataset_id": did, "path": str(meta_path.parent.parent),
                    "episodes": meta.get("total_episodes"), "frames": meta.get("total_steps"), "fps": None,
                    "task": meta.get("env_spec", {}).get("id") if isinstance(meta.get("env_spec"), dict)
                    else _env_id(meta.get("env_spec")), "action_dim": action_dim, "state_dim": state_dim,
                    "format": "minari"})
    return out


def _space_dim(space: Any) -> int | None:
    """The flat size of a serialised gymnasium space (Box: its shape; Dict: the state entry's), else None."""
    if isinstance(space, str):
        try:
            space = json.loads(space)
        except json.JSONDecodeError:
            return None
    if not isinstance(space, dict):
        return None
    if space.get("type") == "Box":
        return int(np.prod(space.get("shape") or [1]))
    subspaces = space.get("subspaces") or {}
    for key in ("agent_pos", "state", "observation"):
        if key in subspaces:
            return _space_dim(subspaces[key])
    return None


def _env_id(spec: Any) -> str | None:
    if isinstance(spec, str):
        try:
            return json.loads(spec).get("id")
        except (json.JSONDecodeError, AttributeError):
            return None
    return None


class MinariEpisodes:
    """One Minari dataset, episode by episode, with the browsing attributes of ``LeRobotVLADataset``."""

    def __init__(self, ref: str | Path, root: str | Path | None = None):
        from .bc_datasets import load_minari

        ref = str(ref)
        self.dataset_id = ref[len(PREFIX):] if ref.startswith(PREFIX) else ref
        self.minari = load_minari(self.dataset_id, root)
        meta = self.minari.storage.metadata
        self.repo_id = PREFIX + str(meta.get("dataset_id") or self.dataset_id)
        self.root = Path(self.minari.storage.data_path).parent
        self.fps = None
        self.plan_horizon = 0
        self.episode_indices = [int(i) for i in self.minari.episode_indices]
        self.num_episodes = len(self.episode_indices)
        self.num_frames = int(meta.get("total_steps") or self.minari.total_steps)
        env_spec = self.minari.spec.env_spec
        self.env_id = env_spec.id if env_spec is not None else None
        self.meta_info = {"task": self.env_id, "format": "minari",
                          "ref_min_score": meta.get("ref_min_score"), "ref_max_score": meta.get("ref_max_score")}
        self.tasks = [meta.get("description") or f"Minari dataset {self.dataset_id} ({self.env_id or 'no env'})"]
        first = self.episode_data(self.episode_indices[0]) if self.episode_indices else {}
        frames = self.episode_frames(self.episode_indices[0]) if self.episode_indices else np.zeros((0, 1, 1, 3))
        self.action_dim = first[ACTION_KEY].shape[-1] if first else 0
        self.state_dim = first[STATE_KEY].shape[-1] if STATE_KEY in first else 0
        self.image_keys = [IMAGE_KEY] if len(frames) else []
        self.image_shape = tuple(frames.shape[1:]) if len(frames) else ()
        self._stats: dict[str, dict[str, np.ndarray]] | None = None

    def _episode(self, ep: int) -> Any:
        if ep not in self.episode_indices:
            raise IndexError(f"episode {ep} is not in {self.repo_id} (episodes {self.episode_indices[0]}.."
                             f"{self.episode_indices[-1]})")
        return next(iter(self.minari.iterate_episodes([ep])))

    def episode_data(self, ep: int) -> dict[str, Any]:
        """Columns of episode ``ep``: state, action, reward (one row per step) and a task line."""
        from .bc_datasets import _flatten_obs

        e = self._episode(ep)
        n = len(e.actions)
        out = _flatten_obs(e.observations, n)
        out.pop(IMAGE_KEY, None)
        out[ACTION_KEY] = np.asarray(e.actions, dtype=np.float32).reshape(n, -1)
        out["next.reward"] = np.asarray(e.rewards, dtype=np.float32)
        out["return"] = float(np.sum(e.rewards))
        out["task"] = self.tasks[0]
        return out

    def episode_frames(self, ep: int) -> np.ndarray:
        """(T, H, W, 3) uint8 camera frames of episode ``ep``; (0, 1, 1, 3) when the data has none."""
        from .bc_datasets import _flatten_obs

        e = self._episode(ep)
        flat = _flatten_obs(e.observations, len(e.actions))
        return flat.get(IMAGE_KEY, np.zeros((0, 1, 1, 3), np.uint8))

    @property
    def stats(self) -> dict[str, dict[str, np.ndarray]]:
        """mean / std / min / max of state and action over every step (computed once)."""
        if self._stats is None:
            from .bc_datasets import _flatten_obs

            cols: dict[str, list[np.ndarray]] = {STATE_KEY: [], ACTION_KEY: []}
            for e in self.minari.iterate_episodes():
                flat = _flatten_obs(e.observations, len(e.actions))
                if STATE_KEY in flat:
                    cols[STATE_KEY].append(flat[STATE_KEY])
                cols[ACTION_KEY].append(np.asarray(e.actions, np.float32).reshape(len(e.actions), -1))
            self._stats = {}
            for key, parts in cols.items():
                if parts:
                    x = np.concatenate(parts)
                    self._stats[key] = {"mean": x.mean(0), "std": x.std(0), "min": x.min(0), "max": x.max(0)}
        return self._stats

    def episode_returns(self) -> np.ndarray:
        """The undiscounted return of every episode, in episode order."""
        return np.array([float(np.sum(e.rewards)) for e in self.minari.iterate_episodes()])
