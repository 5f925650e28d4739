"""Supervised fine-tuning of a VLA on demonstrations (``VLAFineTuner``).

Before the loop builds its optimiser the trainer shapes the model as the config says:

1. ``freeze_vision`` / ``freeze_vlm``: freeze the vision encoder / vision encoder + language model;
2. ``use_lora``: LoRA adapters (peft) on the language model's ``lora_target_modules`` with rank
   ``lora_r``, scaling ``lora_alpha / lora_r`` and ``lora_dropout``; the LM's base weights freeze,
   the adapters and the non-LM parts (projector, tokens, action head, vision unless frozen) train;
   ``lora_scope: policy`` puts adapters on the projector, FiLM and action head too (OpenVLA's all-linear);
3. ``gradient_checkpointing``: recompute the LM's activations in the backward pass
   (non-reentrant checkpointing, so adapters inside checkpointed layers get their gradients);

then trains with the action loss over the shared loop. Checkpoints of a LoRA run record the adapters
in ``config.json`` so ``VLAModel.from_pretrained`` rebuilds them; ``model.merge_lora()`` folds them in.

Call shapes: ``VLAFineTuner(model, config).train(dataloader)``.
"""

from __future__ import annotations

import logging

from ..config.training_config import FineTuningConfig
from .loop import TrainingError
from .supervised import SupervisedTrainer

log = logging.getLogger(__name__)


class VLAFineTuner(SupervisedTrainer):
    config_class = FineTuningConfig

    def prepare_model(self) -> None:
        super().prepare_model()  # the loss, the freeze flags and gradient checkpointing
        c, m = self.config, self.model
        if c.use_lora:
            self._add_lora()
        self._log_parameters()

    def _add_lora(self) -> None:
        c, m = self.config, self.model
        if not hasattr(m, "add_lora"):
            raise TrainingError(f"training.use_lora needs a VLAModel (a model with add_lora); {type(m).__name__} "
                                f"has none: set training.use_lora: false")
        have = getattr(m, "lora_spec", None)  # the adapters the model already has (a LoRA checkpoint, a second train())
        if have is not None:
            same = (have.r == c.lora_r and have.alpha == c.lora_alpha and have.scope == c.lora_scope
                    and sorted(have.target_modules) == sorted(c.lora_target_modules))
            if not same:
                raise TrainingError(
                    f"the model already has LoRA adapters (r={have.r}, alpha={have.alpha:g} on "
                    f"{', '.join(have.target_modules)}, scope {have.scope}) but training asks for r={c.lora_r}, "
                    f"alpha={c.lora_alpha} on {', '.join(c.lora_target_modules)}, scope {c.lora_scope}; set the same "
                    f"training.lora_r / lora_alpha / lora_target_modules / lora_scope, or merge the adapters first "
                    f"(model.merge_lora())")
            return
        m.add_lora(r=c.lora_r, alpha=c.lora_alpha, dropout=c.lora_dropout, target_modules=list(c.lora_target_modules),
                   scope=c.lora_scope)

    def _log_parameters(self) -> None:
        from ..models.lora import lora_parameter_stats

        trainable, total = lora_parameter_stats(self.model)
        spec = getattr(self.model, "lora_spec", None)
        scope = {"policy": " and the projector / FiLM / head", "all": " and the projector / FiLM / head / vision encoder"}
        what = (f"LoRA r={spec.r} alpha={spec.alpha:g} on {','.join(spec.target_modules)}{scope.get(spec.scope, '')}"
                if spec is not None else "full fine-tuning")
        msg = (f"{what}: {trainable:,} of {total:,} parameters trainable "
               f"({100.0 * trainable / max(1, total):.2f}%)")
        log.info(msg)
        if self.run_dir is not None:
            from ..runs.run_dir import RunDir

            run = self.run_dir if isinstance(self.run_dir, RunDir) else RunDir(self.run_dir)
            run.log(msg)
