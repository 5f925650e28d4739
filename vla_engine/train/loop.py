"""The one shared training loop: every trainer (BC, fine-tuning, ...) runs its updates through it.

It owns what is the same for every method: the device, AdamW, warmup + a decay schedule, gradient
accumulation and clipping, mixed precision on a GPU, an optional EMA of the weights (torch's
AveragedModel), seeding,
atomic checkpoints every N steps, exact resume (model, optimiser, scheduler, RNG, data position),
metrics to ``metrics.jsonl`` and TensorBoard, tqdm, SIGTERM -> checkpoint + ``stopped``, and a stop
with a clear error on a NaN/inf loss that keeps the last good checkpoint.
"""

from __future__ import annotations

import json
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, Dataset, RandomSampler, SequentialSampler, Sampler

from ..config.training_config import TrainingConfig
from ..errors import CheckpointError
from ..runs.run_dir import RunDir, atomic_write_text


class TrainingError(RuntimeError):
    """Training cannot go on (diverged loss, bad checkpoint, mismatched data). One-line message."""


@dataclass
class TrainResult:
    state: str  # done | stopped
    step: int
    total_steps: int
    final_loss: float | None
    first_loss: float | None
    checkpoint: Path | None
    history: list[dict] = field(default_factory=list)


# ------------------------------------------------------------------------------------------------
# Helpers: devices, seeding, a resumable sampler, batch moves.
# ------------------------------------------------------------------------------------------------
def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TrainingError(f"training.device is {name!r} but no CUDA GPU is visible; use device: auto or cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class ResumableRandomSampler(Sampler[int]):
    """A shuffling sampler whose order is a function of (seed, epoch) and that can start mid-epoch."""

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True):
        self.n, self.seed, self.shuffle = n, seed, shuffle
        self.epoch, self.start = 0, 0

    def set_position(self, epoch: int, start: int) -> None:
        self.epoch, self.start = epoch, start

    def __iter__(self):
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        start, self.start = self.start, 0
        return iter(order[start:])

    def __len__(self) -> int:
        return self.n - self.start


def move_to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: move_to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], torch.Tensor):
        return type(batch)(move_to_device(v, device) for v in batch)
    return batch


def build_scheduler(opt: torch.optim.Optimizer, config: TrainingConfig, total_steps: int):
    """Linear warmup over ``warmup_steps``, then ``lr_scheduler`` down to ``min_lr_ratio`` of the peak at
    ``total_steps``: transformers' schedules (LambdaLR underneath, so checkpoints store only the step)."""
    from transformers.optimization import (get_constant_schedule_with_warmup,
                                           get_cosine_with_min_lr_schedule_with_warmup, get_wsd_schedule)

    warm = min(config.warmup_steps, max(0, total_steps - 1))
    if config.lr_scheduler == "constant":
        return get_constant_schedule_with_warmup(opt, warm)
    if config.lr_scheduler == "linear":
        return get_wsd_schedule(opt, warm, num_decay_steps=max(1, total_steps - warm), num_stable_steps=0,
                                decay_type="linear", min_lr_ratio=config.min_lr_ratio)
    return get_cosine_with_min_lr_schedule_with_warmup(opt, warm, total_steps, min_lr_rate=config.min_lr_ratio)


def _rng_state() -> dict:
    np_state = np.random.get_state()
    return {
        "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state().tolist(),
        "cuda": [s.tolist() for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
    }


def _set_rng_state(state: dict) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])


def save_weights(model: nn.Module, directory: Path, filename: str = "model.safetensors") -> None:
    """A model's weights (and its config.json when it has save_pretrained) into ``directory``."""
    from safetensors.torch import save_model

    directory.mkdir(parents=True, exist_ok=True)
    if filename == "model.safetensors" and hasattr(model, "save_pretrained"):
        model.save_pretrained(directory)
    else:
        save_model(model, str(directory / filename))


def load_weights(model: nn.Module, path: Path) -> None:
    from safetensors import SafetensorError
    from safetensors.torch import load_model

    if not path.exists():
        raise CheckpointError(f"checkpoint file {path} is missing; resume from another checkpoint or start a new run")
    try:
        load_model(model, str(path), strict=True)
    except (SafetensorError, OSError, RuntimeError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(
            f"checkpoint file {path} is corrupt or does not match the model ({first}); "
            f"delete {path.parent} to resume from the previous checkpoint"
        ) from None


# ------------------------------------------------------------------------------------------------
# The loop.
# ------------------------------------------------------------------------------------------------
LossFn = Callable[[nn.Module, dict], "tuple[torch.Tensor, dict[str, float]]"]


class TrainLoop:
    """Runs ``loss_fn(model, batch)`` over a dataset for ``config`` and writes a run folder.

    Args:
        model: the policy; ``model(batch) -> (loss, info)`` unless ``loss_fn`` is given.
        config: the shared loop's fields (any ``TrainingConfig`` subclass).
        run_dir: where checkpoints/metrics go; ``None`` trains without writing anything.
        loss_fn: ``(model, batch) -> (loss, info)``; default calls the model.
    """

    def __init__(self, model: nn.Module, config: TrainingConfig, run_dir: RunDir | str | Path | None = None,
                 loss_fn: LossFn | None = None, progress: bool = True,
                 on_log: Callable[[int, dict], None] | None = None):
        self.model = model
        self.on_log = on_log  # called with (step, row) at every logged step (a caller without a run folder)
        self.config = config
        self.run = RunDir(run_dir) if isinstance(run_dir, (str, Path)) else run_dir
        self.loss_fn = loss_fn or (lambda m, b: m(b))
        self.progress = progress
        self.device = resolve_device(config.device)
        self._stop_requested = False

    # -- data --------------------------------------------------------------------------------
    def _loader(self, data: Dataset | DataLoader) -> tuple[DataLoader, ResumableRandomSampler | None]:
        c = self.config
        if isinstance(data, DataLoader):
            if isinstance(data.sampler, (RandomSampler, SequentialSampler)) and data.batch_size is not None:
                sampler = ResumableRandomSampler(len(data.dataset), c.seed,
                                                 shuffle=isinstance(data.sampler, RandomSampler))
                loader = DataLoader(data.dataset, batch_size=data.batch_size, sampler=sampler,
                                    num_workers=data.num_workers, collate_fn=data.collate_fn,
                                    drop_last=data.drop_last, pin_memory=data.pin_memory,
                                    persistent_workers=data.num_workers > 0)
                return loader, sampler
            return data, None  # a custom sampler (e.g. weighted): resume skips batches instead
        if len(data) == 0:
            raise TrainingError("the dataset is empty; generate or point to a dataset with frames")
        sampler = ResumableRandomSampler(len(data), c.seed)
        collate = getattr(data, "collate_fn", None)
        loader = DataLoader(data, batch_size=c.batch_size, sampler=sampler, num_workers=c.num_workers,
                            collate_fn=collate, drop_last=len(data) >= c.batch_size,
                            persistent_workers=c.num_workers > 0)
        return loader, sampler

    # -- checkpoints -------------------------------------------------------------------------
    def _save_checkpoint(self, step: int, epoch: int, batch_in_epoch: int, opt, sched, scaler, ema) -> Path | None:
        if self.run is None:
            return None

        def write(tmp: Path) -> None:
            if ema is not None:
                save_weights(ema.module, tmp)  # inference weights = EMA
                save_weights(self.model, tmp, "train_model.safetensors")
            else:
                save_weights(self.model, tmp)
            torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                        "scaler": scaler.state_dict() if scaler is not None else None},
                       tmp / "optimizer.pt")
            state = {"step": step, "epoch": epoch, "batch_in_epoch": batch_in_epoch,
                     "total_steps": self._total_steps, "rng": _rng_state(),
                     "config": self.config.to_dict(), "time": time.time()}
            atomic_write_text(tmp / "trainer_state.json", json.dumps(state))

        return self.run.write_checkpoint(step, write, self.config.keep_last)

    def _load_checkpoint(self, ckpt: Path, opt, sched, scaler, ema) -> dict:
        state_file = ckpt / "trainer_state.json"
        try:
            state = json.loads(state_file.read_text())
        except (OSError, json.JSONDecodeError):
            raise CheckpointError(
                f"checkpoint {ckpt} has a missing or corrupt trainer_state.json; delete {ckpt} to resume from the previous one"
            ) from None
        if ema is not None:
            load_weights(self.model, ckpt / "train_model.safetensors")
            load_weights(ema.module, ckpt / "model.safetensors")
        else:
            load_weights(self.model, ckpt / "model.safetensors")
        try:
            opt_state = torch.load(ckpt / "optimizer.pt", map_location=self.device, weights_only=True)
            opt.load_state_dict(opt_state["optimizer"])
            sched.load_state_dict(opt_state["scheduler"])
            if scaler is not None and opt_state.get("scaler"):
                scaler.load_state_dict(opt_state["scaler"])
        except (OSError, RuntimeError, KeyError, ValueError, EOFError) as e:
            raise CheckpointError(
                f"checkpoint {ckpt}/optimizer.pt is corrupt ({type(e).__name__}); delete {ckpt} to resume from the previous one"
            ) from None
        _set_rng_state(state["rng"])
        return state

    # -- signals -----------------------------------------------------------------------------
    def _on_sigterm(self, signum, frame) -> None:
        self._stop_requested = True

    def request_stop(self) -> None:
        self._stop_requested = True

    # -- the loop ----------------------------------------------------------------------------
    def fit(self, data: Dataset | DataLoader, resume: bool = True) -> TrainResult:
        c, model, device = self.config, self.model, self.device
        if c.num_threads:
            torch.set_num_threads(c.num_threads)
        seed_everything(c.seed)
        loader, sampler = self._loader(data)
        steps_per_epoch = max(1, len(loader) // c.gradient_accumulation_steps)
        self._total_steps = total = c.max_steps or c.num_epochs * steps_per_epoch

        model.to(device)
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise TrainingError("the model has no trainable parameters; unfreeze a part (e.g. freeze_vlm: false)")
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": c.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=c.learning_rate, betas=(c.adam_beta1, c.adam_beta2),
            fused=device.type == "cuda",
        )
        sched = build_scheduler(opt, c, total)
        use_amp = device.type == "cuda" and c.mixed_precision != "no"
        amp_dtype = torch.bfloat16 if c.mixed_precision == "bf16" else torch.float16
        scaler = torch.amp.GradScaler("cuda") if use_amp and c.mixed_precision == "fp16" else None
        ema = None  # an exponential moving average of the weights: the weights that are saved and evaluated
        if c.ema_decay > 0:
            ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(c.ema_decay)).eval()
            ema.requires_grad_(False)

        step, epoch, batch_in_epoch = 0, 0, 0
        if resume and self.run is not None and self.run.last_checkpoint() is not None:
            ckpt = self.run.last_checkpoint()
            state = self._load_checkpoint(ckpt, opt, sched, scaler, ema)
            step, epoch, batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
            if ema is not None:
                ema.n_averaged.fill_(max(1, step))  # go on averaging (0 would copy the weights afresh)
            self.run.prepare_resume(step)
            self.run.log(f"resumed from {ckpt.name} (step {step}, epoch {epoch}, batch {batch_in_epoch})")

        old_handler = None
        if self.run is not None:
            try:
                old_handler = signal.signal(signal.SIGTERM, self._on_sigterm)
            except ValueError:  # not the main thread
                old_handler = None
            self.run.write_status("running", step=step, total_steps=total, eta_s=None, error=None)
            self.run.log(f"training {type(model).__name__} on {device} for {total} steps "
                         f"({steps_per_epoch} per epoch), {sum(p.numel() for p in params):,} trainable parameters")

        bar = None
        if self.progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=total, initial=step, desc="train", dynamic_ncols=True, file=sys.stderr)

        history: list[dict] = []
        first_loss = last_loss = None
        last_ckpt = self.run.last_checkpoint() if self.run is not None else None
        window_loss, window_n, window_samples = 0.0, 0, 0
        window_t0 = time.perf_counter()
        t_start = time.perf_counter()
        start_step = step
        state_name = "done"
        accum = c.gradient_accumulation_steps
        try:
            while step < total:
                if sampler is not None:
                    sampler.set_position(epoch, batch_in_epoch * (loader.batch_size or 1))
                it = iter(loader)
                if sampler is None and batch_in_epoch:  # custom sampler: skip what was already seen
                    for _ in range(batch_in_epoch):
                        next(it, None)
                micro = 0
                for batch in it:
                    batch = move_to_device(batch, device)
                    with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                        loss, info = self.loss_fn(model, batch)
                    if not torch.isfinite(loss):
                        where = f"; the last good checkpoint is {last_ckpt}" if last_ckpt else ""
                        raise TrainingError(
                            f"the loss became {loss.item()} at step {step}{where}; lower training.learning_rate "
                            f"or check the data for NaNs"
                        )
                    loss_val = loss.detach()
                    if scaler is not None:
                        scaler.scale(loss / accum).backward()
                    else:
                        (loss / accum).backward()
                    micro += 1
                    batch_in_epoch += 1
                    window_loss += float(loss_val)
                    window_n += 1
                    window_samples += _batch_size(batch)
                    if micro % accum:
                        continue
                    if scaler is not None:
                        scaler.unscale_(opt)
                    grad_norm = torch.nn.utils.clip_grad_norm_(params, c.max_grad_norm) if c.max_grad_norm > 0 else None
                    if scaler is not None:
                        scaler.step(opt)
                        scaler.update()
                    else:
                        opt.step()
                    opt.zero_grad(set_to_none=True)
                    sched.step()
                    step += 1
                    if ema is not None:
                        ema.update_parameters(model)
                    if bar is not None:
                        bar.update(1)

                    if step % c.log_every == 0 or step == total:
                        now = time.perf_counter()
                        mean_loss = window_loss / max(1, window_n)
                        first_loss = mean_loss if first_loss is None else first_loss
                        last_loss = mean_loss
                        row = {"train/loss": mean_loss, "train/lr": sched.get_last_lr()[0],
                               "train/epoch": epoch + batch_in_epoch / max(1, len(loader)),
                               "perf/samples_per_s": window_samples / max(1e-9, now - window_t0)}
                        if grad_norm is not None:
                            row["train/grad_norm"] = float(grad_norm)
                        row.update({f"train/{k}": v for k, v in info.items() if k != "loss"})
                        history.append({"step": step, **row})
                        if self.on_log is not None:
                            self.on_log(step, row)
                        if bar is not None:
                            bar.set_postfix(loss=f"{mean_loss:.4f}")
                        if self.run is not None:
                            self.run.log_metrics(step, row)
                            elapsed = now - t_start
                            eta = elapsed / max(1, step - start_step) * (total - step)
                            self.run.write_status(step=step, total_steps=total, eta_s=round(eta, 1),
                                                  loss=mean_loss)
                        window_loss, window_n, window_samples, window_t0 = 0.0, 0, 0, time.perf_counter()

                    if self.run is not None and (step % c.save_every == 0 or step == total):
                        last_ckpt = self._save_checkpoint(step, epoch, batch_in_epoch, opt, sched, scaler, ema)
                    if self._stop_requested or step >= total:
                        break
                if self._stop_requested:
                    state_name = "stopped"
                    break
                if step < total:
                    epoch += 1
                    batch_in_epoch = 0
            if self.run is not None:
                last_ckpt = self._save_checkpoint(step, epoch, batch_in_epoch, opt, sched, scaler, ema)
                self.run.write_status(state_name, step=step, total_steps=total, eta_s=0,
                                      checkpoint=str(last_ckpt) if last_ckpt else None)
                self.run.log(f"training {state_name} at step {step}")
        except BaseException as e:
            if self.run is not None:
                msg = str(e).splitlines()[0] if str(e) else type(e).__name__
                if isinstance(e, KeyboardInterrupt):
                    last_ckpt = self._save_checkpoint(step, epoch, batch_in_epoch, opt, sched, scaler, ema)
                    self.run.write_status("stopped", step=step, checkpoint=str(last_ckpt) if last_ckpt else None)
                else:
                    self.run.write_status("failed", step=step, error=msg)
                    self.run.log(f"failed: {msg}")
            raise
        finally:
            if bar is not None:
                bar.close()
            if self.run is not None:
                self.run.close()
                if old_handler is not None:
                    signal.signal(signal.SIGTERM, old_handler)
        if ema is not None:  # hand the caller the weights that were evaluated/saved
            model.load_state_dict(ema.module.state_dict())
        return TrainResult(state_name, step, total, last_loss, first_loss, last_ckpt, history)


def _batch_size(batch: Any) -> int:
    if isinstance(batch, dict):
        for v in batch.values():
            if isinstance(v, torch.Tensor) and v.ndim > 0:
                return v.shape[0]
            if isinstance(v, list):
                return len(v)
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0].shape[0]
    return 1
