"""The vision encoders' settings: one small config class per encoder family, registered with each encoder
(``VISION_ENCODERS.register(name, "module:Encoder", config="module:EncoderConfig")``); encoders that share knobs
share a class. Light (no torch), so a preset validates before anything is built. ``model.vision`` in a config
file holds the chosen encoder's fields:

    vision_encoder: cnn
    vision: {dim: 64, pool: 6, film: true}

``image_size`` and ``image_resize`` stay on the model config: the model resizes the images for every encoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ..config.base import ConfigBase


class VisionConfig(ConfigBase):
    """Base of the vision encoder configs."""

    _section: ClassVar[str] = "model.vision"

    @property
    def uses_film(self) -> bool:
        """Whether the instruction conditions the encoder's feature map (FiLM); only encoders that offer it."""
        return False

    def check_model(self, model: Any) -> None:
        """Checks against model-level settings (``model`` is the ModelConfig); raise ConfigError."""


@dataclass
class CNNVisionConfig(VisionConfig):
    """cnn / cnn-keypoints: a small conv net trained from scratch (the CPU default)."""

    dim: int = 64  # channels of the conv layers and width of the tokens
    pool: int = 6  # cnn: pool the feature map to at most pool x pool tokens (0 = the full map); cnn-keypoints: pool**2 keypoints
    film: bool = False  # the instruction scales/shifts the feature map (FiLM, as in RT-1 / BC-Z)

    @property
    def uses_film(self) -> bool:
        return self.film

    def validate(self) -> None:
        self._check_range("dim", 1)
        self._check_range("pool", 0, 64)


@dataclass
class ResNetVisionConfig(VisionConfig):
    """resnet18 / resnet34 / resnet50: torchvision ResNets (ImageNet normalisation), last feature map as tokens."""

    pretrained: str | None = None  # a torchvision weights file; None = random initialisation


@dataclass
class TowerVisionConfig(VisionConfig):
    """siglip / clip / dinov2 / dinov2-reg: transformers vision towers, small from these sizes or pretrained."""

    pretrained: str | None = None  # local folder or hub id; None = built small from the sizes below
    dim: int = 64  # hidden size when built from scratch (pretrained: its own)
    num_layers: int = 2  # layers when built from scratch
    num_heads: int = 4  # attention heads when built from scratch
    patch_size: int = 16  # patch size when built from scratch
    # 0 = the final output; -k = the output of the k-th block from the end, before the final norm (OpenVLA reads -2)
    feature_layer: int = 0

    def validate(self) -> None:
        self._check_range("dim", 1)
        self._check_range("num_layers", 1)
        self._check_range("num_heads", 1)
        self._check_range("patch_size", 1)
        self._check_range("feature_layer", -1024, 0)
        if self.pretrained is None and self.dim % self.num_heads:
            self._fail("dim", f"must be divisible by num_heads ({self.num_heads})")

    def check_model(self, model: Any) -> None:
        if self.pretrained is None and model.image_size % self.patch_size:
            self._fail("patch_size", f"does not divide model.image_size ({model.image_size}); make image_size a "
                                     f"multiple of it")


@dataclass
class FusedTowerVisionConfig(TowerVisionConfig):
    """dinosiglip: OpenVLA's DINOv2 + SigLIP patch features, concatenated channel-wise."""

    siglip_pretrained: str | None = None  # the SigLIP folder / hub id (pretrained is DINOv2's)


@dataclass
class VLMVisionConfig(VisionConfig):
    """smolvlm / qwen2-vl: a VLM's own vision tower and connector, small from these sizes or from a VLM folder."""

    pretrained: str | None = None  # a VLM folder or hub id; None = built small from the sizes below
    dim: int = 64  # hidden size when built from scratch
    num_layers: int = 2  # layers when built from scratch
    num_heads: int = 4  # attention heads when built from scratch
    patch_size: int = 16  # patch size when built from scratch

    def validate(self) -> None:
        self._check_range("dim", 1)
        self._check_range("num_layers", 1)
        self._check_range("num_heads", 1)
        self._check_range("patch_size", 1)


# The flat model fields an earlier version had for the encoders -> their name in the encoder configs
FLAT_VISION_KEYS: dict[str, str] = {
    "vision_pretrained": "pretrained", "vision2_pretrained": "siglip_pretrained", "vision_dim": "dim",
    "vision_pool": "pool", "vision_num_layers": "num_layers", "vision_num_heads": "num_heads",
    "vision_patch_size": "patch_size", "vision_feature_layer": "feature_layer", "film": "film",
}
