"""OpenVLA's fused vision backbone (Prismatic "dinosiglip"): DINOv2 and SigLIP see the same image and
their patch features are concatenated channel-wise, one token per patch: (B, P, D_dino + D_siglip).

DINOv2 brings spatial, geometric features; SigLIP brings semantic, language-aligned ones (Kim et al.
2024, Sec. 3). Each tower keeps its own preprocessing (ImageNet vs 0.5/0.5 normalisation). When the
two patch grids differ (other patch or image sizes), SigLIP's grid is resampled to DINOv2's.

``vision.pretrained`` names the DINOv2 folder / hub id (plain DINOv2, or DINOv2 with registers as OpenVLA
uses) and ``vision.siglip_pretrained`` the SigLIP one; from scratch both towers are built small from the
ModelConfig sizes. ``vision.feature_layer`` applies to both towers (OpenVLA: -2, the output of the
second-to-last block before the final norm; ``models/convert_openvla.py`` loads OpenVLA's own checkpoints). A checkpoint saves DINOv2's config in
``vision/`` with SigLIP's nested in it (``vla_fused_siglip``), so the rebuild needs no folder.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from ..config.base import ConfigError
from ._util import _import_transformers
from .vision import Dinov2Encoder, Dinov2RegEncoder, SiglipEncoder, VisionEncoder, _family_of


class DinoSiglipEncoder(VisionEncoder):
    name = "dinosiglip"

    def __init__(self, dino: Dinov2Encoder, siglip: SiglipEncoder):  # dino: a Dinov2Encoder or Dinov2RegEncoder
        super().__init__()
        self.dino, self.siglip = dino, siglip
        self.out_dim = dino.out_dim + siglip.out_dim
        self.image_size = dino.image_size
        self.grid = dino.image_size // dino.patch_size
        self.num_tokens = self.grid * self.grid
        conf = dino.hf_config
        conf.vla_fused_siglip = siglip.hf_config.to_dict()  # saved with the checkpoint's vision/config.json
        self.hf_config = conf

    @classmethod
    def from_config(cls, cfg, *, hf_config: Any = None, rebuild: bool = False) -> "DinoSiglipEncoder":
        layer = cfg.vision.feature_layer
        if hf_config is not None:  # a saved checkpoint: both structures from the one config
            tf = _import_transformers()
            sig = getattr(hf_config, "vla_fused_siglip", None)
            if not sig:
                raise ValueError("this checkpoint's vision/config.json has no fused SigLIP config "
                                 "(vla_fused_siglip); it was not saved from a dinosiglip encoder")
            sig_conf = tf.SiglipVisionConfig.from_dict(dict(sig))
            dino_cls = Dinov2RegEncoder if hf_config.model_type in Dinov2RegEncoder.model_types else Dinov2Encoder
            return cls(dino_cls(hf_config=hf_config, keep_cls=False, feature_layer=layer),
                       SiglipEncoder(hf_config=sig_conf, feature_layer=layer))
        if cfg.vision.pretrained is not None:
            try:
                family = _family_of(cfg.vision.pretrained, ["dinov2", "dinov2-reg"])
            except ConfigError:
                family = "dinov2"  # Dinov2Encoder says what is wrong with the folder
            dino_cls = Dinov2RegEncoder if family == "dinov2-reg" else Dinov2Encoder
            dino = dino_cls(pretrained=cfg.vision.pretrained, keep_cls=False, feature_layer=layer)
        else:
            dino = Dinov2Encoder(hf_config=Dinov2Encoder.small_config(cfg), keep_cls=False, feature_layer=layer)
        if cfg.vision.siglip_pretrained is not None:
            siglip = SiglipEncoder(pretrained=cfg.vision.siglip_pretrained, feature_layer=layer)
        else:
            siglip = SiglipEncoder(hf_config=SiglipEncoder.small_config(cfg), feature_layer=layer)
        return cls(dino, siglip)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        d = self.dino(images)  # (B, Pd, Dd) patch tokens
        s = self.siglip(images)  # (B, Ps, Ds)
        if s.shape[1] != d.shape[1]:  # different grids: resample SigLIP's to DINOv2's
            gs, gd = int(math.isqrt(s.shape[1])), int(math.isqrt(d.shape[1]))
            s = s.transpose(1, 2).reshape(s.shape[0], -1, gs, gs)  # (B, Ds, gs, gs)
            s = F.interpolate(s, size=(gd, gd), mode="bilinear", align_corners=False)  # (B, Ds, gd, gd)
            s = s.flatten(2).transpose(1, 2)  # (B, Pd, Ds)
        return torch.cat([d, s], dim=-1)  # (B, P, Dd + Ds)
