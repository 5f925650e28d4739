"""Supervised fine-tuning of a VLA on demonstrations (the seed's ``VLAFineTuner``).

Freezes what the config says (``freeze_vision``, ``freeze_vlm``) and trains the rest with the
action loss, over the shared loop. LoRA adapters come with the peft integration.
"""

from __future__ import annotations

from ..config.training_config import FineTuningConfig
from .methods import CapabilityMissing
from .supervised import SupervisedTrainer


class VLAFineTuner(SupervisedTrainer):
    config_class = FineTuningConfig

    def prepare_model(self) -> None:
        super().prepare_model()
        c = self.config
        if c.use_lora:
            raise CapabilityMissing(
                "LoRA fine-tuning (training.use_lora: true) is not built in this version of vla_engine yet; "
                "set training.use_lora: false to fine-tune the unfrozen parts in full"
            )
        m = self.model
        if c.freeze_vision:
            if hasattr(m, "freeze_vision"):
                m.freeze_vision(True)
            elif hasattr(m, "vision_encoder"):
                m.vision_encoder.requires_grad_(False)
        if c.freeze_vlm and hasattr(m, "freeze_vlm"):
            m.freeze_vlm(True)
        if c.gradient_checkpointing and hasattr(m, "gradient_checkpointing_enable"):
            m.gradient_checkpointing_enable()
