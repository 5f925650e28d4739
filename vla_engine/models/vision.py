"""Vision encoders: images (B, 3, H, W) float in [0, 1] -> tokens (B, N, D).

Each encoder resizes to its ``image_size``, applies its own normalisation, and exposes
``out_dim`` (D) and ``num_tokens`` (N). Built from a ``ModelConfig`` with ``from_config``, or in a
script with ``VisionEncoder.create("clip", pretrained=None, dim=64, image_size=64)``.

    cnn                      a small conv net with a learned position embedding (the CPU default)
    resnet18/34/50           torchvision ResNets (ResNetEncoder), ImageNet normalisation, weights from a file
    siglip / clip / dinov2   transformers vision towers (HFVisionEncoder): small from the config's sizes,
                             or from_pretrained a local folder / cached hub id (its preprocessor config read)
    dinov2-reg               DINOv2 with register tokens (transformers Dinov2WithRegistersModel; OpenVLA's tower)

The transformers towers hand on their final output by default; ``vision.feature_layer: -k`` hands on the
output of the k-th block from the end instead, before the final norm (OpenVLA / Prismatic use -2).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config.base import ConfigError
from ..config.model_config import ModelConfig
from ..registry import VISION_ENCODERS
from .configuration_vision import FLAT_VISION_KEYS
from .parts import part_config_class

from ._util import _first_line, _import_transformers, cached_hub_config, pretrained_load_error  # noqa: F401

log = logging.getLogger(__name__)


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# size names accepted by VisionEncoder.create -> the encoder configs' fields (models/configuration_vision.py)
_SIZE_ALIASES = {"hidden_size": "dim", **FLAT_VISION_KEYS}


class VisionEncoder(nn.Module):
    """Base: ``forward(images (B, 3, H, W) in [0, 1]) -> tokens (B, N, out_dim)``.

    ``VisionEncoder.create(name_or_path, pretrained=None, **sizes)`` builds any registered encoder."""

    name: str = "vision"
    out_dim: int
    num_tokens: int
    image_size: int
    hf_config: Any = None  # a transformers config to save with checkpoints (rebuild without the hub)

    @classmethod
    def create(cls, name: str, pretrained: str | None = None, *, freeze: bool = False,
               **kwargs: Any) -> "VisionEncoder":
        """An encoder by registry name ("cnn", "resnet18", "resnet34", "resnet50", "siglip", "clip", "dinov2"),
        or by a pretrained folder / hub id alone (the family read from its config.json).

        ``pretrained``: a local folder or hub id (siglip, clip, dinov2) or a weights file (resnets); None builds
        a small model from the sizes. ``**kwargs``: the encoder's settings (``dim``, ``num_layers``, ``num_heads``,
        ``patch_size``, ``pool``; sizes another family has are ignored; the flat ``vision_dim`` forms of an earlier layout work too),
        ``image_size`` and ``dropout``, and, for clip /
        dinov2, ``keep_cls``. ``freeze=True``: no gradients for the encoder (a fixed feature extractor).
        """
        if name not in VISION_ENCODERS:
            if pretrained is not None:
                raise ConfigError(f"unknown vision encoder {name!r}; choose one of: "
                                  f"{', '.join(VISION_ENCODERS.names())} (pretrained= gives the weights)")
            name, pretrained = _family_of(name, VISION_ENCODERS.names()), name
        built = VISION_ENCODERS.get(name)
        extra = {k: kwargs.pop(k) for k in ("keep_cls",) if k in kwargs}
        if extra and not issubclass(built, HFVisionEncoder):
            raise ConfigError(f"keep_cls applies to the clip and dinov2 encoders, not {name!r}")
        own = part_config_class(VISION_ENCODERS, name).field_names()
        model_fields = {k: kwargs.pop(k) for k in ("image_size", "dropout", "image_resize") if k in kwargs}
        settings = {_SIZE_ALIASES.get(k, k): v for k, v in kwargs.items()}
        unknown = sorted(k for k in settings if k not in own and k not in ("dim", "num_layers", "num_heads",
                                                                             "patch_size", "pool", "film"))
        if unknown:
            raise ConfigError(f"VisionEncoder.create: {', '.join(unknown)} is not a setting of the {name} encoder; "
                              f"its settings: {', '.join(own)}")
        settings = {k: v for k, v in settings.items() if k in own}  # sizes another family has are ignored
        if pretrained is not None:
            settings["pretrained"] = pretrained
        cfg = ModelConfig(vision_encoder=name, vision=settings, **model_fields)
        enc = built.from_config(cfg, **extra)
        if freeze:
            enc.requires_grad_(False)
        return enc

    def resize(self, images: torch.Tensor) -> torch.Tensor:
        s = self.image_size
        if images.shape[-2:] != (s, s):
            down = images.shape[-1] > s or images.shape[-2] > s
            images = F.interpolate(images, size=(s, s), mode="bilinear", align_corners=False,
                                   antialias=down)  # (B, 3, s, s)
        return images

    def _set_normalization(self, mean: Any, std: Any) -> None:
        # not saved with the weights (the encoder's config decides them): old checkpoints load as they were
        self.register_buffer("mean", torch.tensor([float(v) for v in mean]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([float(v) for v in std]).view(1, 3, 1, 1), persistent=False)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) in [0, 1] -> what the network reads: resized, normalised with the encoder's
        mean / std when it has them."""
        x = self.resize(images)  # (B, 3, S, S)
        if getattr(self, "mean", None) is not None:
            x = (x - self.mean) / self.std  # (B, 3, S, S)
        return x

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

    name = "cnn"

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
        return cls(out_dim=cfg.vision.dim, image_size=cfg.image_size, pool=cfg.vision.pool)

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


# ------------------------------------------------------------------------------------------------
# ResNets (torchvision)
# ------------------------------------------------------------------------------------------------
class ResNetEncoder(VisionEncoder):
    """A torchvision ResNet without its pooling/fc: the last feature map as tokens (one per 32x32 pixels)
    plus a learned position embedding. ImageNet normalisation. ``weights``: a local torchvision state-dict
    file (.safetensors, or .pt/.pth read with ``weights_only=True``), or None for random initialisation.
    Subclasses pick the depth with ``arch``."""

    arch: str = "resnet18"
    IMAGENET_MEAN = IMAGENET_MEAN
    IMAGENET_STD = IMAGENET_STD

    def __init__(self, image_size: int = 96, weights: str | None = None):
        super().__init__()
        import torchvision

        self.image_size = image_size
        net = getattr(torchvision.models, self.arch)(weights=None)
        if weights is not None:
            net.load_state_dict(_load_resnet_state(weights, self.arch, net.state_dict()), strict=False)
        self.out_dim = int(net.fc.in_features)  # 512 (resnet18/34) or 2048 (resnet50)
        self.net = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3,
                                 net.layer4)
        self._set_normalization(self.IMAGENET_MEAN, self.IMAGENET_STD)
        side = -(-image_size // 32)  # every stride-2 stage rounds up
        self.pos_embed = nn.Parameter(torch.randn(side * side, self.out_dim) * 0.02)  # (N, D)
        self.num_tokens = side * side

    @classmethod
    def from_config(cls, cfg, *, hf_config: Any = None, rebuild: bool = False) -> "ResNetEncoder":
        # rebuild: the structure of a saved checkpoint, whose own weights are loaded afterwards
        return cls(image_size=cfg.image_size, weights=None if rebuild else cfg.vision.pretrained)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.preprocess(images)  # (B, 3, S, S) normalised
        x = self.net(x)  # (B, D, h, w)
        x = x.flatten(2).transpose(1, 2)  # (B, N, D)
        if x.shape[1] != self.pos_embed.shape[0]:
            raise ConfigError(f"{self.arch} gave {x.shape[1]} tokens but expected {self.pos_embed.shape[0]}; "
                              f"keep model.image_size at the value the model was built with")
        return x + self.pos_embed  # (B, N, D)


class ResNet18Encoder(ResNetEncoder):
    """torchvision ResNet-18: 512-d tokens."""

    name = arch = "resnet18"


class ResNet34Encoder(ResNetEncoder):
    """torchvision ResNet-34: 512-d tokens."""

    name = arch = "resnet34"


class ResNet50Encoder(ResNetEncoder):
    """torchvision ResNet-50 (bottleneck blocks): 2048-d tokens."""

    name = arch = "resnet50"


def _load_resnet_state(path: str, arch: str, ref: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A torchvision ``arch`` state dict from a local file (or a folder holding one), checked against ``ref``
    (the freshly built model's own state dict). The classifier (fc) may be missing."""
    p = Path(path).expanduser()
    if p.is_dir():
        names = ("model.safetensors", f"{arch}.safetensors", f"{arch}.pth", f"{arch}.pt", "pytorch_model.bin")
        found = [p / n for n in names if (p / n).exists()]
        if not found:
            raise ConfigError(f"model.vision.pretrained: folder {path!r} has no model.safetensors or {arch}.pth; "
                              f"point it at a torchvision {arch} weights file")
        p = found[0]
    if not p.exists():
        raise ConfigError(f"model.vision.pretrained: {path!r} does not exist; give a local torchvision {arch} "
                          f"weights file (.safetensors or .pth) or leave it empty to train from scratch")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(p))
        else:
            state = torch.load(p, map_location="cpu", weights_only=True)  # tensors only: no pickled code runs
    except Exception as e:  # noqa: BLE001 - any failure to read the file is the same user error
        raise ConfigError(f"model.vision.pretrained: could not read {p} ({_first_line(e)}); "
                          f"give a torchvision {arch} state dict (.safetensors, or a .pth from torch.save)") from None
    for key in ("state_dict", "model"):  # training checkpoints wrap the weights
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ConfigError(f"model.vision.pretrained: {p} holds a {type(state).__name__}, not a state dict; "
                          f"save the weights with torch.save(model.state_dict(), path)")
    state = {str(k).removeprefix("module."): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    missing = [k for k in ref if k not in state and not k.startswith("fc.")]
    if missing:
        raise ConfigError(f"model.vision.pretrained: {p} is not a {arch} state dict ({len(missing)} weights "
                          f"missing, e.g. {missing[0]}); give {arch} weights or change model.vision_encoder")
    for k, v in ref.items():
        if k in state and state[k].shape != v.shape:
            raise ConfigError(f"model.vision.pretrained: {p} is not a {arch} state dict ({k} has shape "
                              f"{tuple(state[k].shape)}, {arch} needs {tuple(v.shape)}); give {arch} weights "
                              f"or change model.vision_encoder")
    return {k: state[k] for k in ref if k in state}


# ------------------------------------------------------------------------------------------------
# transformers vision towers
# ------------------------------------------------------------------------------------------------
# config.json model_type -> the encoder family (registry name) that loads it
_MODEL_TYPES = {"siglip": "siglip", "siglip_vision_model": "siglip", "clip": "clip", "clip_vision_model": "clip",
                "dinov2": "dinov2", "dinov2_with_registers": "dinov2-reg"}


class HFVisionEncoder(VisionEncoder):
    """A transformers vision model: small from ``hf_config``, or ``from_pretrained`` a local folder / hub id.

    A folder holding a full two-tower model (``CLIPModel`` / ``SiglipModel``, a config with ``vision_config``)
    works too: its vision tower is loaded. Preprocessing (in torch, on float images in [0, 1]): resize to
    ``image_size``, then ``(x - mean) / std`` with the family's defaults, or with ``image_mean`` /
    ``image_std`` / size of the folder's ``preprocessor_config.json`` when it has one. These choices are stored
    on the model's config (``vla_image_size``, ``vla_image_mean``, ``vla_image_std``, ``vla_keep_cls``), which
    a VLA checkpoint saves, so ``hf_config=`` rebuilds the same encoder without the original folder.

    ``feature_layer``: 0 hands on the model's final output (``last_hidden_state``); -k the output of the k-th
    block from the end, before the final norm (``hidden_states[-k]``; OpenVLA reads -2, the second-to-last
    block). Prefix tokens (CLS, registers) are dropped unless ``keep_cls``.

    Subclasses name the transformers classes, the default normalisation and the token selection.
    """

    what: str = ""  # for messages: "a CLIP vision model"
    model_class: str = ""  # transformers model class, e.g. "CLIPVisionModel"
    config_class: str = ""  # its config class, e.g. "CLIPVisionConfig"
    model_types: tuple[str, ...] = ()  # config.json model_type values this family loads
    default_mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    default_std: tuple[float, ...] = (0.5, 0.5, 0.5)
    has_cls: bool = False  # the model's output sequence starts with a CLS token
    default_keep_cls: bool = False  # keep that CLS token in front of the patch tokens
    interpolate_kwarg: bool = True  # forward takes interpolate_pos_encoding (CLIP, SigLIP; DINOv2 always does it)

    def __init__(self, hf_config: Any = None, pretrained: str | None = None, keep_cls: bool | None = None,
                 image_size: int | None = None, feature_layer: int = 0):
        super().__init__()
        tf = _import_transformers()
        model_cls = getattr(tf, self.model_class)
        processor: dict[str, Any] = {}
        if pretrained is not None:
            ref = self._check_pretrained(pretrained)
            try:
                self.model = model_cls.from_pretrained(ref, torch_dtype=torch.float32)
            except Exception as e:  # noqa: BLE001 - OSError / ValueError / HF errors: one user message
                raise pretrained_load_error("vision.pretrained", pretrained, self.what, e) from None
            processor = self._read_preprocessor(ref)
        elif hf_config is not None:
            self.model = model_cls(hf_config)
        else:
            raise ValueError(f"{type(self).__name__} needs hf_config (a {self.config_class}) or pretrained")
        conf = self.model.config
        if keep_cls is None:
            keep_cls = getattr(conf, "vla_keep_cls", self.default_keep_cls)
        if keep_cls and not self.has_cls:
            raise ConfigError(f"{self.name} has no CLS token (only patch tokens); keep_cls applies to clip and dinov2")
        size = image_size or getattr(conf, "vla_image_size", None) or processor.get("size") or conf.image_size
        mean = getattr(conf, "vla_image_mean", None) or processor.get("mean") or self.default_mean
        std = getattr(conf, "vla_image_std", None) or processor.get("std") or self.default_std
        # recorded on the config, which a VLA checkpoint saves: the rebuild needs no preprocessor file
        conf.vla_image_size, conf.vla_keep_cls = int(size), bool(keep_cls)
        conf.vla_image_mean, conf.vla_image_std = [float(v) for v in mean], [float(v) for v in std]
        self.hf_config = conf
        self.keep_cls = bool(keep_cls)
        self.image_size = int(size)
        self.out_dim = int(conf.hidden_size)
        self.patch_size = int(conf.patch_size)
        self.num_tokens = (self.image_size // self.patch_size) ** 2 + int(self.keep_cls)
        self._set_normalization(conf.vla_image_mean, conf.vla_image_std)
        depth = int(conf.num_hidden_layers)
        if not -depth <= int(feature_layer) <= 0:
            raise ConfigError(f"model.vision.feature_layer: {feature_layer} is out of range for a {depth}-layer "
                              f"{self.name} tower; choose 0 (final output) or -1 .. -{depth} (a block's output)")
        self.feature_layer = int(feature_layer)
        self._forward_kwargs = ({"interpolate_pos_encoding": True}
                                if self.interpolate_kwarg and self.image_size != int(conf.image_size) else {})

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def family_sizes(cls, cfg) -> dict[str, Any]:
        """The config arguments beyond width, depth, heads, image and patch size (MLP width, dropout...)."""
        return {}

    @classmethod
    def small_config(cls, cfg) -> Any:
        """A small transformers config from the ModelConfig sizes (trained from scratch)."""
        tf = _import_transformers()
        return getattr(tf, cls.config_class)(
            hidden_size=cfg.vision.dim, num_hidden_layers=cfg.vision.num_layers,
            num_attention_heads=cfg.vision.num_heads, image_size=cfg.image_size, patch_size=cfg.vision.patch_size,
            **cls.family_sizes(cfg))

    @classmethod
    def from_config(cls, cfg, *, hf_config: Any = None, rebuild: bool = False,
                    keep_cls: bool | None = None) -> "HFVisionEncoder":
        layer = cfg.vision.feature_layer
        if hf_config is not None:  # rebuilding a saved checkpoint: the structure only, weights come after
            return cls(hf_config=hf_config, keep_cls=keep_cls, feature_layer=layer)
        if cfg.vision.pretrained is not None:
            return cls(pretrained=cfg.vision.pretrained, keep_cls=keep_cls, feature_layer=layer)
        return cls(hf_config=cls.small_config(cfg), keep_cls=keep_cls, feature_layer=layer)

    def _check_pretrained(self, ref: str) -> str:
        """A folder or hub id that holds this family's model (its config read, no weights yet)."""
        p = Path(ref).expanduser()
        if p.is_dir():
            if not (p / "config.json").exists():
                raise ConfigError(f"model.vision.pretrained: folder {ref!r} has no config.json; give a folder "
                                  f"saved with save_pretrained from {self.what}")
            ref = str(p)
        elif p.exists():
            raise ConfigError(f"model.vision.pretrained: {ref!r} is a file; {self.name} loads a folder saved with "
                              f"save_pretrained (or a hub id); weight files are for the resnet encoders")
        elif ref.startswith(("/", ".", "~")) or ref.count("/") > 1:
            raise ConfigError(f"model.vision.pretrained: folder {ref!r} does not exist; give a folder saved with "
                              f"save_pretrained from {self.what} (or a cached hub id)")
        tf = _import_transformers()
        try:
            conf = tf.AutoConfig.from_pretrained(ref, trust_remote_code=False)
        except Exception as e:  # noqa: BLE001 - unknown hub id, offline, bad JSON: one user message
            raise pretrained_load_error("vision.pretrained", ref, self.what, e) from None
        mt = getattr(conf, "model_type", None)
        if mt not in self.model_types:
            family = _MODEL_TYPES.get(mt)
            fix = (f"set model.vision_encoder: {family}" if family else
                   f"give a folder saved with save_pretrained from {self.what}")
            raise ConfigError(f"model.vision.pretrained: {ref!r} holds a {mt!r} model, not {self.what}; {fix}")
        return ref

    def _read_preprocessor(self, ref: str) -> dict[str, Any]:
        """mean / std / size from the image processor config saved with the model ({} when there is none)."""
        local = Path(ref).is_dir()
        if local and not (Path(ref) / "preprocessor_config.json").exists():
            return {}
        tf = _import_transformers()
        try:
            proc = tf.AutoImageProcessor.from_pretrained(ref, trust_remote_code=False, use_fast=False)
        except Exception as e:  # noqa: BLE001
            if local:
                raise ConfigError(f"model.vision.pretrained: {ref}/preprocessor_config.json could not be read "
                                  f"({_first_line(e)}); fix it or delete it to use the {self.name} defaults") from None
            log.info("no image processor config for %s (%s); using the %s defaults", ref, _first_line(e), self.name)
            return {}
        out: dict[str, Any] = {}
        if getattr(proc, "do_normalize", True) is False:
            out["mean"], out["std"] = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
        else:
            for key, name in (("mean", "image_mean"), ("std", "image_std")):
                v = getattr(proc, name, None)
                if v is not None:
                    out[key] = [float(v)] * 3 if isinstance(v, (int, float)) else [float(x) for x in v]
        size = _processor_size(proc)
        if size:
            out["size"] = size
        return out

    # -- use ------------------------------------------------------------------------------------
    @property
    def num_registers(self) -> int:
        """Register tokens between the CLS token and the patches (DINOv2 with registers)."""
        return 0

    def select_tokens(self, hidden: torch.Tensor) -> torch.Tensor:
        """The model's output sequence -> the tokens handed on: the patch tokens, with the CLS token in
        front when ``keep_cls`` (register tokens are always dropped)."""
        if not self.has_cls:
            return hidden  # (B, P, D)
        patches = hidden[:, 1 + self.num_registers:]  # (B, P, D)
        return torch.cat([hidden[:, :1], patches], dim=1) if self.keep_cls else patches  # (B, N, D)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.preprocess(images)  # (B, 3, S, S) normalised
        if self.feature_layer:  # a block's output, before the final norm
            out = self.model(pixel_values=x, output_hidden_states=True, **self._forward_kwargs)
            hidden = out.hidden_states[self.feature_layer]  # (B, prefix + P, D)
        else:
            hidden = self.model(pixel_values=x, **self._forward_kwargs).last_hidden_state  # (B, prefix + P, D)
        return self.select_tokens(hidden)  # (B, N, D)


def _processor_size(proc: Any) -> int | None:
    """The square side an image processor hands its model: the crop when it crops, else its resize size."""
    def side(s: Any) -> int | None:
        if isinstance(s, int):
            return s
        if isinstance(s, dict):
            for k in ("height", "shortest_edge", "width"):
                if s.get(k):
                    return int(s[k])
        return None

    if getattr(proc, "do_center_crop", False) and side(getattr(proc, "crop_size", None)):
        return side(proc.crop_size)
    return side(getattr(proc, "size", None))


class SiglipEncoder(HFVisionEncoder):
    """transformers ``SiglipVisionModel``: patch tokens (SigLIP has no CLS). Normalisation: mean = std = 0.5."""

    name, what = "siglip", "a SigLIP vision model"
    model_class, config_class = "SiglipVisionModel", "SiglipVisionConfig"
    model_types = ("siglip", "siglip_vision_model")
    default_mean, default_std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)

    @classmethod
    def family_sizes(cls, cfg) -> dict[str, Any]:
        return dict(intermediate_size=cfg.vision.dim * 4, attention_dropout=cfg.dropout, vision_use_head=False)


class ClipEncoder(HFVisionEncoder):
    """transformers ``CLIPVisionModel``: the patch tokens of the last layer (the CLS token dropped, as in
    LLaVA; ``keep_cls=True`` keeps it in front). Normalisation: the OpenAI CLIP mean / std."""

    name, what = "clip", "a CLIP vision model"
    model_class, config_class = "CLIPVisionModel", "CLIPVisionConfig"
    model_types = ("clip", "clip_vision_model")
    default_mean, default_std = CLIP_MEAN, CLIP_STD
    has_cls, default_keep_cls = True, False

    @classmethod
    def family_sizes(cls, cfg) -> dict[str, Any]:
        return dict(intermediate_size=cfg.vision.dim * 4, attention_dropout=cfg.dropout)


class Dinov2Encoder(HFVisionEncoder):
    """transformers ``Dinov2Model``: the CLS token followed by the patch tokens (layer-normed last layer;
    ``keep_cls=False`` gives patch tokens only). Normalisation: ImageNet mean / std. Position embeddings
    are interpolated, so any image size works."""

    name, what = "dinov2", "a DINOv2 model"
    model_class, config_class = "Dinov2Model", "Dinov2Config"
    model_types = ("dinov2",)
    default_mean, default_std = IMAGENET_MEAN, IMAGENET_STD
    has_cls, default_keep_cls = True, True
    interpolate_kwarg = False

    @classmethod
    def family_sizes(cls, cfg) -> dict[str, Any]:
        return dict(mlp_ratio=4, attention_probs_dropout_prob=cfg.dropout)


class Dinov2RegEncoder(Dinov2Encoder):
    """transformers ``Dinov2WithRegistersModel`` (Darcet et al. 2024, "Vision Transformers Need Registers"):
    DINOv2 with register tokens after the CLS token; they are always dropped from the output. OpenVLA's
    DINOv2 tower (timm ``vit_large_patch14_reg4_dinov2``) is of this kind."""

    name, what = "dinov2-reg", "a DINOv2-with-registers model"
    model_class, config_class = "Dinov2WithRegistersModel", "Dinov2WithRegistersConfig"
    model_types = ("dinov2_with_registers",)

    @property
    def num_registers(self) -> int:
        return int(self.hf_config.num_register_tokens)


def _family_of(ref: str, names: list[str]) -> str:
    """The encoder family of a pretrained folder / cached hub id, from its config.json ``model_type``
    (for an uncached hub id, from its name)."""
    p = Path(ref).expanduser()
    data = None
    if p.is_file():
        raise ConfigError(f"vision encoder {ref!r} is a weights file; name the architecture too, e.g. "
                          f"VisionEncoder.create('resnet18', pretrained={ref!r})")
    if p.is_dir():
        try:
            data = json.loads((p / "config.json").read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"vision encoder folder {ref!r} has no readable config.json ({_first_line(e)}); "
                              f"give a folder saved with save_pretrained") from None
    else:
        data = cached_hub_config(ref)
    if data is not None:
        family = _MODEL_TYPES.get(data.get("model_type"))
        if family is None:
            raise ConfigError(f"vision encoder {ref!r} holds a {data.get('model_type')!r} model; give a SigLIP, "
                              f"CLIP or DINOv2 model, or one of: {', '.join(names)}")
        return family
    low = ref.lower()
    if "dinov2" in low and "regist" in low and not p.is_absolute():
        return "dinov2-reg"
    for key in ("siglip", "clip", "dinov2"):
        if key in low and not p.is_absolute():
            return key  # an uncached hub id: from_pretrained will say whether it can be had
    raise ConfigError(f"unknown vision encoder {ref!r}: not one of {', '.join(names)}, not a local model folder "
                      f"and not a known hub id; give a name or a folder saved with save_pretrained")
