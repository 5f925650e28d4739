"""Config migration: files written by earlier versions keep loading.

Each setting has one owner. When a key moves or goes, a config file (a preset, a run's
``config.yaml``, a checkpoint's ``config.json``) that still names the old key is rewritten on load
and one line says which key replaced it. The table below is the whole history of moved keys.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("vla_engine.config")

# (section, old key) -> (section, new key), or None when the key is gone (derived elsewhere).
MOVED_KEYS: dict[tuple[str, str], tuple[str, str] | None] = {
    # freezing is a training decision; the model keeps no freeze flags
    ("model", "freeze_vision"): ("training", "freeze_vision"),
    ("model", "freeze_vlm"): ("training", "freeze_vlm"),
    # LoRA is asked for by the training config; a checkpoint records the adapters it has separately
    ("model", "lora_r"): ("training", "lora_r"),
    ("model", "lora_alpha"): ("training", "lora_alpha"),
    ("model", "lora_dropout"): ("training", "lora_dropout"),
    ("model", "lora_target_modules"): ("training", "lora_target_modules"),
    ("model", "lora_scope"): ("training", "lora_scope"),
    # the loss is the action head's
    ("training", "action_loss"): ("model", "action_loss"),
    # observation history and chunk length are the model's; the data is cut to fit it
    ("dataset", "chunk_size"): ("model", "chunk_size"),
    ("dataset", "n_obs_steps"): ("model", "n_obs_steps"),
    # read by nothing: the loader decodes frames once into memory, the trainer's num_workers feeds it
    ("dataset", "num_workers"): ("training", "num_workers"),
    # the run's method names the trainer and the training config's class
    ("training", "algorithm"): ("run", "method"),
    ("training", "type"): ("run", "method"),
    ("training", "stage"): ("run", "method"),
}

_seen: set[str] = set()


def note(message: str) -> None:
    """Say a migration line once per process (a run re-reads its config often)."""
    if message not in _seen:
        _seen.add(message)
        log.warning(message)


def moved_note(old: str, new: str | None, where: str = "") -> str:
    src = f" in {where}" if where else ""
    if new is None:
        return f"config: '{old}'{src} is no longer used and was dropped"
    return f"config: '{old}'{src} is now '{new}'; moved it (save the file again to update it)"


def migrate_run_dict(data: dict[str, Any], where: str = "") -> dict[str, Any]:
    """Move old keys of a whole run config (sections model / dataset / training) to their owners.

    Where both the old and the new key are present the new one wins. ``training.algorithm`` /
    ``type`` / ``stage`` are checked against the run's ``method`` by the run config itself.
    """
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in (data or {}).items()}
    for (sec, key), dest in MOVED_KEYS.items():
        section = data.get(sec)
        if not isinstance(section, dict) or key not in section:
            continue
        if dest is not None and dest[0] == "run":
            continue  # method checks: RunConfig.from_dict
        value = section.pop(key)
        if dest is None:
            note(moved_note(f"{sec}.{key}", None, where))
            continue
        dsec, dkey = dest
        target = data.setdefault(dsec, {})
        if not isinstance(target, dict):
            continue
        if (sec, key) == ("model", "lora_r") and value:
            target.setdefault("use_lora", True)
        if dkey not in target:
            target[dkey] = value
        note(moved_note(f"{sec}.{key}", f"{dsec}.{dkey}", where))
    return data
