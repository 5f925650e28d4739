"""Vision encoders: images (B, 3, H, W) float in [0, 1] -> tokens (B, N, D).

Each encoder resizes to its ``image_size``, applies its own normalisation, and exposes
``out_dim`` (D) and ``num_tokens`` (N). Built from a ``ModelConfig`` with ``from_config``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config.base import ConfigError

from ._util import _first_line, _import_transformers, pretrained_load_error  # noqa: F401

log = logging.getLogger(__name__)


class VisionEncoder(nn.Module):
    """Base: ``forward(images (B, 3, H, W) in [0, 1]) -> tokens (B, N, out_dim)``."""

    name: str = "vision"
    out_dim: int
    num_tokens: int
    image_size: int
    hf_config: Any = None  # a transformers config to save with checkpoints (rebuild without the hub)

    def resize(self, images: torch.Tensor) -> torch.Tensor:
        s = self.image_size
        if images.shape[-2:] != (s, s):
            down = images.shape[-1] > s or images.shape[-2] > s
            images = F.interpolate(images, size=(s, s), mode="bilinear", align_corners=False,
                                   antialias=down)  # (B, 3, s, s)
        return images

    def _count_tokens(self) -> int:
        was = self.training
        self.eval()
        with torch.no_grad():
            n = self(torch.zeros(1, 3, self.image_size, self.image_size)).shape[1]
        self.train(was)
        return n


class CNNEncoder(VisionEncoder):
    """Four stride-2 conv layers (GroupNorm + ReLU), the feature map pooled to at most ``pool x pool`` tokens
    with a learned 2-D position embedding. Fast on a CPU: 96 px -> a 6x6 map = 36 tokens."""

    def __init__(self, out_dim: int = 64, image_size: int = 96, pool: int = 6, channels: tuple[int, ...] = (32, 64, 64)):
        super().__init__()
        self.out_dim, self.image_size, self.pool = out_dim, image_size, pool
        chans = [5, *channels, out_dim]  # RGB + 2 coordinate channels (CoordConv: easier localisation)
        layers: list[nn.Module] = []
        for i in range(len(chans) - 1):
            k = 5 if i == 0 else 3
            layers += [nn.Conv2d(chans[i], chans[i + 1], k, stride=2, padding=k // 2),
                       nn.GroupNorm(min(8, chans[i + 1]), chans[i + 1]), nn.ReLU(inplace=True)]
        self.net = nn.Sequential(*layers)
        side = image_size
        for _ in range(len(chans) - 1):
            side = (side + 1) // 2
        self.grid = min(side, pool) if pool > 0 else side
        self.film_channels = out_dim  # FiLM scales/shifts the last feature map, one pair per channel
        self.pos_embed = nn.Parameter(torch.randn(self.grid * self.grid, out_dim) * 0.02)  # (N, D)
        self.num_tokens = self.grid * self.grid

    @classmethod
    def from_config(cls, cfg, *, hf_config: Any = None, rebuild: bool = False) -> "CNNEncoder":
        return cls(out_dim=cfg.vision_dim, image_size=cfg.image_size, pool=cfg.vision_pool)

    def forward(self, images: torch.Tensor, film: torch.Tensor | None = None) -> torch.Tensor:
        """``film``: (B, 2 * out_dim) per-channel (scale, shift) from the instruction, or None."""
        x = self.resize(images) * 2.0 - 1.0  # (B, 3, S, S) in [-1, 1]
        b, _, h, w = x.shape
        ys = torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype).view(1, 1, h, 1).expand(b, 1, h, w)
        xs = torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype).view(1, 1, 1, w).expand(b, 1, h, w)
        x = torch.cat([x, xs, ys], dim=1)  # (B, 5, S, S)
        x = self.net(x)  # (B, D, h, w)
        if film is not None:
            gamma, beta = film.chunk(2, dim=-1)  # (B, D), (B, D)
            x = F.relu(x * (1 + gamma[:, :, None, None]) + beta[:, :, None, None])  # (B, D, h, w)
        if x.shape[-1] != self.grid or x.shape[-2] != self.grid:
            x = F.adaptive_avg_pool2d(x, self.grid)  # (B, D, g, g)
        x = x.flatten(2).transpose(1, 2)  # (B, N, D)
        return x + self.pos_embed  # (B, N, D)


class ResNet18Encoder(VisionEncoder):
    """torchvision ResNet-18 without its pooling/fc; the last feature map (512 channels) as tokens.
    ``weights``: a local torchvision state-dict file (.safetensors, or .pt/.pth read with weights_only)."""

    IMAGENET_MEAN = (0.485, 0.456, 0.406)
    IMAGENET_STD = (0.229, 0.224, 0.225)

    def __init__(self, image_size: int = 96, weights: str | None = None):
        super().__init__()
        import torchvision

        self.image_size, self.out_dim = image_size, 512
        net = torchvision.models.resnet18(weights=None)
        if weights is not None:
            net.load_state_dict(_load_resnet_state(weights), strict=True)
        self.net = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3,
                                 net.layer4)
        self.register_buffer("mean", torch.tensor(self.IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self.IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        side = (image_size + 31) // 32
        self.pos_embed = nn.Parameter(torch.randn(side * side, 512) * 0.02)  # (N, 512)
        self.num_tokens = side * side

    @classmethod
    def from_config(cls, cfg, *, hf_config: Any = None, rebuild: bool = False) -> "ResNet18Encoder":
        # rebuild: the structure of a saved checkpoint, whose own weights are loaded afterwards
        return cls(image_size=cfg.image_size, weights=None if rebuild else cfg.vision_pretrained)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (self.resize(images) - self.mean) / self.std  # (B, 3, S, S)
        x = self.net(x)  # (B, 512, h, w)
        x = x.flatten(2).transpose(1, 2)  # (B, N, 512)
        if x.shape[1] != self.pos_embed.shape[0]:
            raise ConfigError(f"resnet18 gave {x.shape[1]} tokens but expected {self.pos_embed.shape[0]}; "
                              f"keep model.image_size at the value the model was built with")
        return x + self.pos_embed  # (B, N, 512)


def _load_resnet_state(path: str) -> dict[str, torch.Tensor]:
    p = Path(path)
    if p.is_dir():
        found = [q for q in (p / "model.safetensors", p / "resnet18.safetensors", p / "resnet18.pth",
                             p / "pytorch_model.bin") if q.exists()]
        if not found:
            raise ConfigError(f"model.vision_pretrained: {path!r} has no model.safetensors or resnet18.pth; "
                              f"point it at a torchvision resnet18 weights file")
        p = found[0]
    if not p.exists():
        raise ConfigError(f"model.vision_pretrained: {path!r} does not exist; give a local torchvision resnet18 "
                          f"weights file (.safetensors or .pth) or leave it empty to train from scratch")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(p))
        else:
            state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure to read the file is the same user error
        raise ConfigError(f"model.vision_pretrained: could not read {p} ({_first_line(e)}); "
                          f"give a torchvision resnet18 state dict") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    state = {k.removeprefix("module."): v for k, v in state.items()}
    import torchvision

    ref = torchvision.models.resnet18(weights=None).state_dict()
    state = {k: v for k, v in state.items() if k in ref}
    missing = [k for k in ref if k not in state]
    if missing:
        raise ConfigError(f"model.vision_pretrained: {p} is not a resnet18 state dict ({len(missing)} weights "
                          f"missing, e.g. {missing[0]})")
    return state


class SiglipEncoder(VisionEncoder):
    """transformers ``SiglipVisionModel``: a small one from config, or ``from_pretrained(path_or_id)``.
    Preprocessing: resize to the config's image_size, normalise with mean = std = 0.5."""

    def __init__(self, hf_config: Any = None, pretrained: str | None = None):
        super().__init__()
        tf = _import_transformers()
        if pretrained is not None:
            try:
                self.model = tf.SiglipVisionModel.from_pretrained(pretrained, torch_dtype=torch.float32)
            except Exception as e:  # noqa: BLE001 - OSError / ValueError / HF errors: one user message
                raise pretrained_load_error("vision_pretrained", pretrained, "a SigLIP vision model", e) from None
        else:
            self.model = tf.SiglipVisionModel(hf_config)
        self.hf_config = self.model.config
        self.image_size = int(self.hf_config.image_size)
        self.out_dim = int(self.hf_config.hidden_size)
        self.num_tokens = (self.image_size // int(self.hf_config.patch_size)) ** 2

    @staticmethod
    def small_config(cfg) -> Any:
        tf = _import_transformers()
        return tf.SiglipVisionConfig(
            hidden_size=cfg.vision_dim, intermediate_size=cfg.vision_dim * 4, num_hidden_layers=cfg.vision_num_layers,
            num_attention_heads=cfg.vision_num_heads, image_size=cfg.image_size, patch_size=cfg.vision_patch_size,
            attention_dropout=cfg.dropout, vision_use_head=False,
        )

    @classmethod
    def from_config(cls, cfg, *, hf_config: Any = None, rebuild: bool = False) -> "SiglipEncoder":
        if hf_config is not None:  # rebuilding a saved checkpoint: the structure only, weights come after
            return cls(hf_config=hf_config)
        if cfg.vision_pretrained is not None:
            return cls(pretrained=cfg.vision_pretrained)
        return cls(hf_config=cls.small_config(cfg))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (self.resize(images) - 0.5) / 0.5  # (B, 3, S, S) in [-1, 1]
        return self.model(pixel_values=x).last_hidden_state  # (B, N, D)
