"""Offline behaviour-cloning datasets read from Minari (the successor of D4RL).

    BCDataset("vla/hopper/expert-v0")                       every transition of the dataset
    FilteredBCDataset(ref, top_percent=10)                  the episodes whose return is in the top 10 %
    FilteredBCDataset(ref, return_threshold=1500.0)         ... or at least a return
    WeightedBCDataset(ref, weighting="return", temperature=1.0)     all data, high-return data weighted up
    create_bc_dataloader(dataset, batch_size=256, weighted_sampling=True)

A reference is a Minari dataset id (looked up under ``root``, else ``MINARI_DATASETS_PATH``, else
minari's ``~/.minari/datasets``), a D4RL name such as ``hopper-expert-v2`` (read from the Minari id
``vla/hopper/expert-v0`` or ``mujoco/hopper/expert-v0``, whichever is there) or a path to a dataset folder
(the one holding ``data/``, or ``data/`` itself). The files are read through minari's own ``MinariDataset``, so any dataset minari can open
works here, and the transitions are held as flat float32 arrays indexed per batch (no per-item Python
work on the training path).

Items use LeRobot's batch keys: ``observation.state`` (S,), ``action`` (A,) and, for a weighted
dataset, ``weight``. Dictionary observations (the tabletop tasks' ``{"pixels", "agent_pos"}``) give
``observation.images.front`` (3, H, W) in [0, 1] next to the state.

Weights: ``return`` gives every step of episode i the weight exp((R_i - max R) / (T * std R)), so a
lower temperature T puts more weight on the best episodes; ``advantage`` (as AWR) fits a ridge
regression V(s) of the discounted return-to-go G_t on the state and weighs each step by
exp((G_t - V(s_t)) / (T * std A)), clipped at ``max_weight``. Both are scaled to mean 1.

The D4RL-style normalised score, 100 * (R - random) / (expert - random), uses the dataset's
``ref_min_score`` / ``ref_max_score`` (written by ``minari_io`` when it makes a dataset).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from .lerobot_io import ACTION_KEY, IMAGE_KEY, STATE_KEY, DatasetError

WEIGHTINGS = ("return", "advantage")


def minari_root(root: str | Path | None = None) -> Path:
    """Where Minari datasets live: ``root``, else ``MINARI_DATASETS_PATH``, else ``~/.minari/datasets``."""
    if root is not None:
        return Path(root)
    env = os.environ.get("MINARI_DATASETS_PATH")
    return Path(env) if env else Path.home() / ".minari" / "datasets"


def _data_dir(ref: str | Path, root: str | Path | None) -> Path:
    p = Path(ref)
    for cand in (p, p / "data"):
        if (cand / "metadata.json").exists():
            return cand
    for did in (str(ref), *_d4rl_aliases(str(ref))):
        by_id = minari_root(root) / did / "data"
        if (by_id / "metadata.json").exists():
            return by_id
    raise DatasetError(
        f"no Minari dataset '{ref}' (looked for a folder with data/metadata.json and for the id under "
        f"{minari_root(root)}); make one with `python -m vla_engine.data.minari_io --env Hopper-v5` "
        f"or pass root= / set MINARI_DATASETS_PATH"
    )


def _d4rl_aliases(ref: str) -> tuple[str, ...]:
    """A D4RL name (``hopper-expert-v2``, ``hopper-medium-replay-v2``) -> the Minari ids that hold the same
    data: ours (``vla/hopper/expert-v0``) and the Farama release (``mujoco/hopper/expert-v0``)."""
    m = re.fullmatch(r"([a-z0-9]+)-([a-z-]+)-v\d+", ref)
    if m is None:
        return ()
    env, level = m.groups()
    return f"vla/{env}/{level}-v0", f"mujoco/{env}/{level}-v0"


def load_minari(ref: str | Path, root: str | Path | None = None):
    """Open a Minari dataset by id or path with minari's own reader (``minari.MinariDataset``)."""
    from minari import MinariDataset

    try:
        return MinariDataset(_data_dir(ref, root))
    except DatasetError:
        raise
    except Exception as e:  # noqa: BLE001 - a corrupt folder: one line naming it
        raise DatasetError(f"Minari dataset '{ref}' cannot be read ({type(e).__name__}: {e}); "
                           f"write it again with minari_io or check its files") from None


def _flatten_obs(obs: Any, n: int) -> dict[str, np.ndarray]:
    """An episode's observations (n + 1 of them) -> the LeRobot keys, the final one dropped."""
    if isinstance(obs, dict):
        out = {}
        state = obs.get("agent_pos", obs.get("state", obs.get("observation")))
        if state is not None:
            out[STATE_KEY] = np.asarray(state, dtype=np.float32)[:n].reshape(n, -1)
        if "pixels" in obs:
            out[IMAGE_KEY] = np.asarray(obs["pixels"], dtype=np.uint8)[:n]  # (n, H, W, 3)
        if not out:
            raise DatasetError(f"Minari observations with keys {sorted(obs)} have no state: expected "
                               f"'agent_pos', 'state' or 'observation' (and optionally 'pixels')")
        return out
    return {STATE_KEY: np.asarray(obs, dtype=np.float32)[:n].reshape(n, -1)}


class BCDataset(Dataset):
    """Every transition of a Minari dataset, as flat arrays (``observations``, ``actions``, ...).

    ``env_name`` is the seed's keyword for the same reference. ``gamma`` discounts the per-step
    return-to-go (``returns_to_go``) used by the advantage weighting.
    """

    def __init__(self, minari_id_or_path: str | Path | None = None, *, env_name: str | None = None,
                 root: str | Path | None = None, gamma: float = 0.99):
        ref = minari_id_or_path if minari_id_or_path is not None else env_name
        if ref is None:
            raise DatasetError("BCDataset needs a Minari dataset id or path, e.g. BCDataset('vla/hopper/expert-v0')")
        self.ref = str(ref)
        self.minari = load_minari(ref, root)
        meta = self.minari.storage.metadata
        self.ref_min_score = meta.get("ref_min_score")
        self.ref_max_score = meta.get("ref_max_score")
        self.gamma = float(gamma)
        self._load()
        self.weights: np.ndarray | None = None
        self._select(np.arange(self.num_episodes))

    # -- reading -------------------------------------------------------------------------------
    def _load(self) -> None:
        cols: dict[str, list[np.ndarray]] = {}
        acts, rews, terms, truncs, ep_idx, rtg, t_idx = [], [], [], [], [], [], []
        for i, ep in enumerate(self.minari.iterate_episodes()):
            n = len(ep.actions)
            if n == 0:
                continue
            for k, v in _flatten_obs(ep.observations, n).items():
                cols.setdefault(k, []).append(v)
            acts.append(np.asarray(ep.actions, dtype=np.float32).reshape(n, -1))
            r = np.asarray(ep.rewards, dtype=np.float32).reshape(n)
            rews.append(r)
            terms.append(np.asarray(ep.terminations, dtype=bool).reshape(n))
            truncs.append(np.asarray(ep.truncations, dtype=bool).reshape(n))
            ep_idx.append(np.full(n, i, dtype=np.int64))
            t_idx.append(np.arange(n, dtype=np.int64))
            g, acc = np.empty(n, dtype=np.float32), 0.0
            for t in range(n - 1, -1, -1):  # discounted return-to-go, backwards
                acc = r[t] + self.gamma * acc
                g[t] = acc
            rtg.append(g)
        if not acts:
            raise DatasetError(f"Minari dataset '{self.ref}' has no steps; collect episodes into it first")
        self._all = {k: np.concatenate(v) for k, v in cols.items()}
        self._all[ACTION_KEY] = np.concatenate(acts)
        self._all_rewards = np.concatenate(rews)
        self._all_terminals = np.concatenate(terms)
        self._all_timeouts = np.concatenate(truncs)
        raw_ep = np.concatenate(ep_idx)
        _, self._all_episode = np.unique(raw_ep, return_inverse=True)  # episodes numbered 0..E-1
        self._all_t = np.concatenate(t_idx)
        self._all_rtg = np.concatenate(rtg)
        self.episode_returns = np.bincount(self._all_episode, weights=self._all_rewards).astype(np.float64)
        self.episode_lengths = np.bincount(self._all_episode)
        self.num_episodes = len(self.episode_returns)

    def _select(self, episodes: np.ndarray) -> None:
        """Keep the steps of ``episodes`` (indices into ``episode_returns``)."""
        self.episodes = np.sort(np.asarray(episodes, dtype=np.int64))
        mask = np.isin(self._all_episode, self.episodes)
        self.index = np.nonzero(mask)[0]
        self._tensors = {k: torch.from_numpy(np.ascontiguousarray(v[self.index])) for k, v in self._all.items()}
        acts = self._all[ACTION_KEY][self.index]
        self.action_dim = int(acts.shape[1])
        self.state_dim = int(self._all[STATE_KEY].shape[1]) if STATE_KEY in self._all else 0
        self.stats = {k: _stats(self._all[k][self.index]) for k in (STATE_KEY, ACTION_KEY) if k in self._all}

    # -- the seed's array views ------------------------------------------------------------------
    @property
    def observations(self) -> np.ndarray:
        return self._all[STATE_KEY][self.index]

    @property
    def actions(self) -> np.ndarray:
        return self._all[ACTION_KEY][self.index]

    @property
    def rewards(self) -> np.ndarray:
        return self._all_rewards[self.index]

    @property
    def terminals(self) -> np.ndarray:
        return self._all_terminals[self.index]

    @property
    def timeouts(self) -> np.ndarray:
        return self._all_timeouts[self.index]

    @property
    def episode_index(self) -> np.ndarray:
        return self._all_episode[self.index]

    @property
    def returns_to_go(self) -> np.ndarray:
        return self._all_rtg[self.index]

    # -- scores ----------------------------------------------------------------------------------
    def normalized_score(self, returns: Any) -> np.ndarray:
        """D4RL-style score: 0 = the random policy's mean return, 100 = the expert's."""
        return normalized_score(returns, self.ref_min_score, self.ref_max_score, self.ref)

    # -- torch Dataset ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.index)

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        """A whole batch by one index operation per array (DataLoader calls this with the batch's indices)."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        batch = {k: v[idx] for k, v in self._tensors.items()}
        if IMAGE_KEY in batch:
            batch[IMAGE_KEY] = batch[IMAGE_KEY].permute(0, 3, 1, 2).float().div_(255.0)  # (B, 3, H, W)
        if self.weights is not None:
            batch["weight"] = torch.from_numpy(self.weights[idx.numpy()])
        return batch

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[0] for k, v in self.__getitems__([int(i)]).items()}

    @staticmethod
    def collate_fn(batch: Any) -> Any:
        """Batches come whole from ``__getitems__``; a list of single items is stacked."""
        if isinstance(batch, dict):
            return batch
        return {k: torch.stack([b[k] for b in batch]) for k in batch[0]}


class FilteredBCDataset(BCDataset):
    """The episodes whose return is in the top ``top_percent`` % (at least one), or ``>= return_threshold``.

    ``filter_top_k`` is the seed's keyword: a fraction (0.1 = the top 10 %).
    """

    def __init__(self, minari_id_or_path: str | Path | None = None, *, top_percent: float | None = None,
                 return_threshold: float | None = None, filter_top_k: float | None = None, **kw: Any):
        if filter_top_k is not None:
            if top_percent is not None:
                raise DatasetError("give top_percent or filter_top_k (a fraction), not both")
            top_percent = 100.0 * float(filter_top_k)
        if top_percent is None and return_threshold is None:
            top_percent = 10.0
        if top_percent is not None and not 0 < top_percent <= 100:
            raise DatasetError(f"top_percent must be in (0, 100]; got {top_percent}")
        super().__init__(minari_id_or_path, **kw)
        self.top_percent, self.return_threshold = top_percent, return_threshold
        keep = np.arange(self.num_episodes)
        if return_threshold is not None:
            keep = keep[self.episode_returns[keep] >= return_threshold]
            if len(keep) == 0:
                raise DatasetError(f"no episode of '{self.ref}' has a return >= {return_threshold} (best: "
                                   f"{self.episode_returns.max():.1f}); lower return_threshold")
        if top_percent is not None:
            k = max(1, int(np.ceil(len(keep) * top_percent / 100.0)))
            keep = keep[np.argsort(-self.episode_returns[keep], kind="stable")[:k]]
        self._select(keep)


class WeightedBCDataset(BCDataset):
    """Every step, each with a sampling weight from its episode's return or its advantage (see module doc)."""

    def __init__(self, minari_id_or_path: str | Path | None = None, *, weighting: str = "return",
                 temperature: float = 1.0, max_weight: float = 20.0, ridge: float = 1e-3, **kw: Any):
        if weighting not in WEIGHTINGS:
            raise DatasetError(f"weighting {weighting!r} is not allowed; choose one of: {', '.join(WEIGHTINGS)}")
        if not temperature > 0:
            raise DatasetError(f"temperature must be > 0; got {temperature}")
        super().__init__(minari_id_or_path, **kw)
        self.weighting, self.temperature, self.max_weight = weighting, float(temperature), float(max_weight)
        if weighting == "return":
            r = self.episode_returns
            z = (r - r.max()) / (temperature * (r.std() + 1e-8))  # <= 0: the best episode has weight 1
            w = np.exp(z)[self.episode_index]
        else:
            adv = self.returns_to_go - self._value_fit(ridge)
            w = np.exp(np.clip(adv / (temperature * (adv.std() + 1e-8)), None, np.log(max_weight)))
        self.weights = (w / w.mean()).astype(np.float64)

    def _value_fit(self, ridge: float) -> np.ndarray:
        """V(s) by ridge regression of the return-to-go on [s, t / T, 1] (t: the step in its episode)."""
        s = self.observations.astype(np.float64)
        t = self._all_t[self.index].astype(np.float64)
        s = (s - s.mean(0)) / (s.std(0) + 1e-6)
        x = np.concatenate([s, (t / max(1.0, t.max()))[:, None], np.ones((len(s), 1))], axis=1)
        y = self.returns_to_go.astype(np.float64)
        theta = np.linalg.solve(x.T @ x + ridge * len(x) * np.eye(x.shape[1]), x.T @ y)
        return x @ theta


def create_bc_dataloader(dataset: BCDataset, batch_size: int = 256, weighted_sampling: bool = True, *,
                         use_weighted_sampling: bool | None = None, shuffle: bool = True,
                         num_workers: int = 0, drop_last: bool = True, seed: int | None = None) -> DataLoader:
    """Batches of a BC dataset. With ``weighted_sampling`` and a weighted dataset, steps are drawn with
    replacement in proportion to their weights; otherwise shuffled. ``use_weighted_sampling`` is the
    seed's name for the same switch."""
    if use_weighted_sampling is not None:
        weighted_sampling = use_weighted_sampling
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    weights = getattr(dataset, "weights", None)
    sampler = None
    if weighted_sampling and weights is not None:
        sampler = WeightedRandomSampler(torch.as_tensor(weights, dtype=torch.double), num_samples=len(dataset),
                                        replacement=True, generator=gen)
        shuffle = False
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle if sampler is None else None,
                      sampler=sampler, num_workers=num_workers, collate_fn=BCDataset.collate_fn,
                      drop_last=drop_last and len(dataset) >= batch_size, generator=gen if sampler is None else None)


def normalized_score(returns: Any, ref_min: float | None, ref_max: float | None, name: str = "dataset") -> np.ndarray:
    """100 * (return - ref_min) / (ref_max - ref_min), as D4RL reports it."""
    if ref_min is None or ref_max is None:
        raise DatasetError(f"'{name}' has no reference scores (ref_min_score / ref_max_score); make it with "
                           f"minari_io, which measures the random and expert returns")
    if ref_max == ref_min:
        raise DatasetError(f"'{name}': ref_min_score equals ref_max_score ({ref_min}); the score is undefined")
    return 100.0 * (np.asarray(returns, dtype=np.float64) - ref_min) / (ref_max - ref_min)


def _stats(x: np.ndarray) -> dict[str, list[float]]:
    x = x.reshape(len(x), -1).astype(np.float64)
    return {"mean": x.mean(0).tolist(), "std": x.std(0).tolist(), "min": x.min(0).tolist(), "max": x.max(0).tolist()}
