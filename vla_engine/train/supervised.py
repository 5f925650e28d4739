"""What BC and supervised fine-tuning share: checks that the data fits the model, normalisation
statistics from the dataset, and the loss through the policy's ``forward``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..config.training_config import TrainingConfig
from .loop import TrainingError, TrainLoop, TrainResult


def _dataset_of(data: Any) -> Any:
    return data.dataset if isinstance(data, DataLoader) else data


def check_data_fits_model(model: nn.Module, data: Any) -> None:
    """Action dimension, state dimension and chunk size of the data must match the model's config."""
    ds = _dataset_of(data)
    cfg = getattr(model, "config", None)
    if cfg is None:
        return
    for attr, field in (("action_dim", "action_dim"), ("state_dim", "state_dim")):
        have = getattr(ds, attr, None)
        want = getattr(cfg, field, None)
        if have is not None and want is not None and want != 0 and have != want:
            raise TrainingError(
                f"the dataset's {attr} is {have} but the model's model.{field} is {want}; "
                f"set model.{field}: {have} (or pick a dataset of the model's task)"
            )
    chunk = getattr(ds, "chunk_size", None)
    if chunk is not None and getattr(cfg, "chunk_size", chunk) != chunk:
        raise TrainingError(
            f"the dataset gives action chunks of {chunk} steps but model.chunk_size is {cfg.chunk_size}; "
            f"set dataset.chunk_size and model.chunk_size to the same value"
        )


def attach_dataset_stats(model: nn.Module, data: Any) -> None:
    ds = _dataset_of(data)
    stats = getattr(ds, "stats", None)
    if stats and hasattr(model, "set_normalization"):
        has = getattr(model, "has_normalization", None)
        if not (callable(has) and has()) and not (isinstance(has, bool) and has):
            model.set_normalization(stats)


def load_init_weights(model: nn.Module, ref: str) -> None:
    """``training.init_from``: the weights of checkpoint ``ref`` (a run id, folder or ``shipped:<name>``) into
    ``model``, a fresh build of the run's ``model`` section, as LeRobot's ``--policy.path`` or OpenVLA's
    fine-tuning start from a pretrained policy. The architecture must be the checkpoint's (settings that shape no
    weight, e.g. n_action_steps or augmentation, may differ); the normalisation statistics are not taken, so the
    fine-tuning data's own are fitted."""
    from safetensors.torch import load_file

    from ..config.diff import config_diff
    from ..config.model_config import read_model_dict
    from ..models.checkpoint import read_config_json
    from ..runs.jobs import resolve_checkpoint

    ckpt = resolve_checkpoint(ref)
    state = {k: v for k, v in load_file(str(ckpt / "model.safetensors")).items() if "_normalizer." not in k}
    tied: dict[int, list[str]] = {}  # tied weights (the LM's embedding and head) share storage: saved once
    sd = {k: v for k, v in model.state_dict().items() if "_normalizer." not in k}
    for k, v in sd.items():
        tied.setdefault(v.data_ptr() if v.numel() else id(v), []).append(k)
    own = {k: sd[k] for keys in tied.values() for k in ([k for k in keys if k in state] or keys)}
    if set(state) != set(own) or any(state[k].shape != own[k].shape for k in own):
        cfg_file, data = read_config_json(ckpt)
        theirs = read_model_dict(data, str(cfg_file))[0].to_dict()
        mine = model.config.to_dict() if hasattr(getattr(model, "config", None), "to_dict") else {}
        diff = [f"model.{k}: {a!r} there, {b!r} here" for k, (a, b) in config_diff([theirs, mine]).items()]
        raise TrainingError(f"training.init_from: {ref} is not the model this run builds "
                            f"({'; '.join(diff[:4]) or 'its weights differ'}); set the run's model to the "
                            f"checkpoint's or clear training.init_from")
    model.load_state_dict(state, strict=False)


class SupervisedTrainer:
    """Regress demonstrated actions through the policy's own ``forward(batch) -> (loss, info)``."""

    config_class: type[TrainingConfig] = TrainingConfig

    def __init__(self, model: nn.Module, config_or_data: Any = None, run_dir: str | Path | None = None,
                 *, config: TrainingConfig | None = None, progress: bool = True):
        self.model = model
        self.dataset: Dataset | DataLoader | None = None
        if isinstance(config_or_data, TrainingConfig):
            config = config_or_data
        elif config_or_data is not None:
            self.dataset = config_or_data  # the BehavioralCloning(model, dataset) form
        self.config = config if config is not None else self.config_class()
        self.run_dir = run_dir
        self.progress = progress
        self.loop: TrainLoop | None = None

    def prepare_model(self) -> None:
        """Shape the model as the training config says, before the optimiser is built: the weights of
        ``init_from`` are loaded, the loss a config was constructed with (``FineTuningConfig(action_loss=...)``)
        becomes the model's own, and the freeze flags freeze their parts. Subclasses add adapters."""
        c, m = self.config, self.model
        if c.init_from:
            load_init_weights(m, c.init_from)  # a resumed run then loads its own last checkpoint over these
        if c.action_loss is not None and hasattr(m, "set_action_loss"):
            m.set_action_loss(c.action_loss)  # the model config records it, so checkpoints say what was trained
        if c.freeze_vision:
            if hasattr(m, "freeze_vision"):
                m.freeze_vision(True)
            elif hasattr(m, "vision_encoder"):
                m.vision_encoder.requires_grad_(False)
        if c.freeze_vlm and hasattr(m, "freeze_vlm"):
            m.freeze_vlm(True)
        if c.gradient_checkpointing and hasattr(m, "gradient_checkpointing_enable"):
            m.gradient_checkpointing_enable()

    def compute_loss(self, model: nn.Module, batch: dict):
        return model(batch)

    def train(self, dataloader: Dataset | DataLoader | None = None, *, num_epochs: int | None = None,
              max_steps: int | None = None, resume: bool = True) -> TrainResult:
        data = dataloader if dataloader is not None else self.dataset
        if data is None:
            raise TrainingError("no training data: pass a dataset or DataLoader to the trainer or to train()")
        changes = {}
        if num_epochs is not None:
            changes.update(num_epochs=num_epochs, max_steps=None)
        if max_steps is not None:
            changes["max_steps"] = max_steps
        config = self.config.replace(**changes) if changes else self.config
        check_data_fits_model(self.model, data)
        attach_dataset_stats(self.model, data)
        self.prepare_model()
        self.loop = TrainLoop(self.model, config, self.run_dir, loss_fn=self.compute_loss, progress=self.progress)
        return self.loop.fit(data, resume=resume)
