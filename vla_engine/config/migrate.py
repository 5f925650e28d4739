"""Config migration: files written by earlier versions keep loading.

Each setting has one owner. When a key moves or goes, a config file (a preset, a run's
``config.yaml``, a checkpoint's ``config.json``) that still names the old key is rewritten on load
and one line says which key replaced it. The table below is the whole history of moved keys.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("vla_engine.config")

# (section, old key) -> (section, new key), or None when the key is gone. The whole history of moved keys;
# migrate_run_dict below applies it to a run config (files of RunConfig version 1).
MOVED_KEYS: dict[tuple[str, str], tuple[str, str] | None] = {
    # freezing is a training decision; the model keeps no freeze flags
    ("model", "freeze_vision"): ("training", "freeze_vision"),
    ("model", "freeze_vlm"): ("training", "freeze_vlm"),
    # LoRA is asked for by the training config (use_lora, lora_*); a checkpoint records its adapters apart
    ("model", "lora_r"): ("training", "lora_r"),
    ("model", "lora_alpha"): ("training", "lora_alpha"),
    ("model", "lora_dropout"): ("training", "lora_dropout"),
    ("model", "lora_target_modules"): ("training", "lora_target_modules"),
    ("model", "lora_scope"): ("training", "lora_scope"),
    # recomputing activations is a training decision (memory against time), not part of the model
    ("model", "use_gradient_checkpointing"): ("training", "gradient_checkpointing"),
    # the loss is the action head's; a training.action_loss used to replace it, so it wins when moved
    ("training", "action_loss"): ("model", "action_loss"),
    # observation history and chunk length are the model's: the data was always cut to the model's values
    ("dataset", "chunk_size"): None,
    ("dataset", "n_obs_steps"): None,
    # read by nothing (the trainer's training.num_workers feeds the DataLoader)
    ("dataset", "num_workers"): None,
    # the run's method names the trainer and the training config's class (checked by RunConfig.from_dict)
    ("training", "algorithm"): ("run", "method"),
    ("training", "type"): ("run", "method"),
    ("training", "stage"): ("run", "method"),
    # pretraining named the model's parts a second time
    ("training", "vision_encoder"): ("model", "vision_encoder"),
    ("training", "llm_model"): ("model", "llm"),
    ("training", "projector_type"): ("model", "projector"),
}

_LORA_KEYS = ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "lora_scope")

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
    """Move the keys of earlier versions in a whole run config (sections model / dataset / training) to
    their owners, each with a one-line note. ``training.type`` / ``algorithm`` / ``stage`` are left for
    RunConfig.from_dict, which checks them against the run's ``method``."""
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in (data or {}).items()}
    model, dataset, training = (data.setdefault(sec, {}) for sec in ("model", "dataset", "training"))
    if not all(isinstance(x, dict) for x in (model, dataset, training)):
        return data  # a section that is not a mapping: the config's own check names it

    def move(src: dict, sec: str, key: str, dst: dict, dsec: str, dkey: str, overwrite: bool = False) -> None:
        value = src.pop(key)
        if overwrite or dkey not in dst:
            dst[dkey] = value
        note(moved_note(f"{sec}.{key}", f"{dsec}.{dkey}", where))

    for key in ("freeze_vision", "freeze_vlm"):
        if key in model:
            move(model, "model", key, training, "training", key)
    if "use_gradient_checkpointing" in model:
        move(model, "model", "use_gradient_checkpointing", training, "training", "gradient_checkpointing")
    if any(k in model for k in _LORA_KEYS):
        lora = {k: model.pop(k) for k in _LORA_KEYS if k in model}
        if lora.get("lora_r"):
            training.setdefault("use_lora", True)
            for k, v in lora.items():
                training.setdefault(k, v)
            note(moved_note("model.lora_*", "training.lora_* (with training.use_lora: true)", where))
        else:
            note(moved_note("model.lora_* (lora_r 0: no adapters)", None, where))
    if "action_loss" in training:
        value = training.pop("action_loss")
        if value is not None:
            model["action_loss"] = value  # it replaced the head's loss, so it wins
        note(moved_note("training.action_loss", "model.action_loss", where))
    for old, new in (("vision_encoder", "vision_encoder"), ("llm_model", "llm"), ("projector_type", "projector")):
        if old in training:
            move(training, "training", old, model, "model", new)
    for key in ("chunk_size", "n_obs_steps"):
        if key in dataset:
            value = dataset.pop(key)
            have = model.get(key, 1)
            differs = f" (the file said {value}, the model {have})" if value != have else ""
            note(f"config: 'dataset.{key}'{' in ' + where if where else ''} is gone: the data is cut to "
                 f"model.{key}{differs}; set model.{key}")
    if "num_workers" in dataset:
        dataset.pop("num_workers")
        note(moved_note("dataset.num_workers", None, where) + "; training.num_workers sets the loader's workers")
    return data
