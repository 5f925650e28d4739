"""The projectors' settings: one small config class per projector family, registered with each projector
(``PROJECTORS.register(name, "module:Projector", config="module:ProjectorConfig")``). Light (no torch).
``model.projection`` in a config file holds the chosen projector's fields:

    projector: perceiver
    projection: {num_tokens: 16, num_layers: 2, num_heads: 4}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ..config.base import ConfigBase


class ProjectorConfig(ConfigBase):
    """Base of the projector configs."""

    _section: ClassVar[str] = "model.projection"

    def check_model(self, model: Any) -> None:
        """Checks against model-level settings (``model`` is the ModelConfig); raise ConfigError."""


@dataclass
class PlainProjectorConfig(ProjectorConfig):
    """mlp / fused-gelu-mlp / identity: a map of each visual token to the LM's width; no settings of their own."""


@dataclass
class ResamplerProjectorConfig(ProjectorConfig):
    """attention / perceiver: a fixed number of visual tokens out per image, from learned queries / latents."""

    num_tokens: int = 16  # visual tokens out per image
    num_layers: int = 2  # perceiver: resampler layers (attention pools once)
    num_heads: int = 4  # attention heads (must divide the LM's hidden size)

    def validate(self) -> None:
        self._check_range("num_tokens", 1, 4096)
        self._check_range("num_layers", 1)
        self._check_range("num_heads", 1)


# The flat model fields an earlier version had for the projectors -> their name in the projector configs
FLAT_PROJECTOR_KEYS: dict[str, str] = {
    "projector_num_tokens": "num_tokens", "projector_num_layers": "num_layers", "projector_num_heads": "num_heads",
}
