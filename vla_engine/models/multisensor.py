"""``MultiSensorVLA``: a VLA for driving that reads lidar, radar and IMU beside the camera.

Data flow (one forward):

    camera + state + instruction --VLAModel (vision -> projector -> LM)--> action-query feature (B, H)
    observation.lidar (B, N, 4) + mask  --PointNet / Point Transformer-->  (B, D_lidar)
    observation.radar (B, K, 4) + mask  --RadarEncoder-->                  (B, D_radar)
    observation.imu   (B, T, 6)         --IMUEncoder-->                    (B, D_imu)
    [camera feature, sensor features] --fusion (gated / concat / cross-modal / hierarchical)--> (B, fusion_dim)
        --action head--> controls (B, chunk, 3)     (steer, throttle, brake)
        --waypoint head--> (B, prediction_horizon, 2)  future ego positions (m), when prediction_horizon > 0

A sensor whose mask is all zeros for a sample (nothing seen, or the key missing from the batch) is marked
absent for the fusion. The model's settings are ``config.sensors`` (``MultiSensorConfig``); checkpoints
hold them in ``config.json``, so ``VLAModel.from_pretrained(folder)`` rebuilds a MultiSensorVLA.

    >>> model = MultiSensorVLA(vlm_name_or_path="Qwen/Qwen2-VL-2B-Instruct",   # offline: the small stand-in
    ...                        sensor_encoders={"lidar": PointNetEncoder(output_dim=512),
    ...                                         "radar": RadarEncoder(output_dim=256)}, action_dim=3)
    >>> MultiSensorVLA(vlm="qwen2-vl", sensor_encoders={"lidar": PointTransformerEncoder(output_dim=512)},
    ...                action_dim=3, prediction_horizon=6, fusion="gated")
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config.base import ConfigError
from ..config.model_config import ModelConfig
from ..errors import CheckpointError
from ..registry import ACTION_HEADS, FUSIONS, SENSOR_ENCODERS
from .checkpoint import load_native, read_config_json
from .configuration_multisensor import SENSOR_NAMES, SENSOR_NOISE_STD, MultiSensorConfig
from .fusion import Fusion
from .sensors import SensorEncoder
from .vla import VLAModel

log = logging.getLogger(__name__)

__all__ = ["MultiSensorVLA", "load_multisensor", "WAYPOINT_SCALE"]

WAYPOINT_SCALE = 10.0  # waypoints are regressed in units of 10 m (O(1) targets)
_DIM_FIELD = {"lidar": "lidar_dim", "radar": "radar_dim", "imu": "imu_dim"}


def _registry_name(module: nn.Module, registry: Any) -> str:
    """The registry key of ``module``'s class (so the config can rebuild it)."""
    for name in registry.names():
        if registry.get(name) is type(module):
            return name
    raise ConfigError(f"{type(module).__name__} is not in the {registry.kind} registry; register it so a "
                      f"MultiSensorVLA checkpoint can rebuild it")


def _sensors_from_modules(encoders: Mapping[str, Any]) -> dict[str, Any]:
    """``{"lidar": PointNetEncoder(output_dim=512), "radar": "radar"}`` -> MultiSensorConfig fields."""
    fields: dict[str, Any] = {s: None for s in SENSOR_NAMES}
    settings: dict[str, dict] = {}
    for sensor, enc in encoders.items():
        if sensor not in SENSOR_NAMES:
            raise ConfigError(f"sensor_encoders: {sensor!r} is not a sensor; the sensors are {', '.join(SENSOR_NAMES)}")
        if isinstance(enc, str):
            fields[sensor] = enc
            continue
        if not isinstance(enc, SensorEncoder):
            raise ConfigError(f"sensor_encoders[{sensor!r}] must be a sensor encoder (PointNetEncoder, RadarEncoder, "
                              f"...) or its registry name; got {type(enc).__name__}")
        fields[sensor] = _registry_name(enc, SENSOR_ENCODERS)
        spec = dict(enc.spec)
        fields[_DIM_FIELD[sensor]] = int(spec.pop("output_dim"))
        if spec:
            settings[sensor] = spec
    fields["encoder_settings"] = settings
    return fields


class MultiSensorVLA(VLAModel):
    """A VLAModel whose action head reads the camera/VLM feature fused with lidar, radar and IMU features.

    Args:
        config: a ``ModelConfig`` (or a dict of its fields) with ``sensors`` set, or None.
        vlm_name_or_path / vlm: the camera VLM, as ``VLAModel``'s ``vlm_name_or_path`` (default "tiny").
        sensor_encoders: ``{sensor: encoder module or registry name}`` for sensors lidar, radar, imu; the
            modules given are used as they are (their weights too).
        fusion: a FUSIONS name ("gated", "concat", "cross-modal", "hierarchical") or a fusion module built for
            ``[camera, *sensors]`` or for the sensors alone (then the camera feature is concatenated after it).
        prediction_horizon: future waypoints predicted beside the controls (0: none).
        **overrides: any ``ModelConfig`` field (``action_dim=3``, ``state_dim=5``, ...) or ``MultiSensorConfig``
            field (``fusion_dim=256``, ``sensor_dropout=0.1``, ...).
    """

    def __init__(self, config: ModelConfig | Mapping[str, Any] | None = None, *, vlm_name_or_path: str | None = None,
                 vlm: str | None = None, sensor_encoders: Mapping[str, Any] | None = None,
                 fusion: str | nn.Module | None = None, prediction_horizon: int | None = None,
                 action_head: nn.Module | str | None = None, **overrides: Any):
        fields = config.to_dict() if isinstance(config, ModelConfig) else dict(config or {})
        sensor_fields = {k: overrides.pop(k) for k in list(overrides) if k in MultiSensorConfig.field_names()}
        sensors = fields.get("sensors")
        sensors = sensors.to_dict() if hasattr(sensors, "to_dict") else dict(sensors or {})
        modules = {k: v for k, v in (sensor_encoders or {}).items() if isinstance(v, nn.Module)}
        if sensor_encoders is not None:
            sensors.update(_sensors_from_modules(sensor_encoders))
        fusion_module = fusion if isinstance(fusion, nn.Module) else None
        if fusion_module is not None:
            sensors["fusion"] = _registry_name(fusion_module, FUSIONS)
        elif fusion is not None:
            sensors["fusion"] = fusion
        if prediction_horizon is not None:
            sensors["prediction_horizon"] = int(prediction_horizon)
        sensors.update(sensor_fields)
        sensors.pop("type", None)
        fields["sensors"] = sensors
        fields.setdefault("action_dim", 3)
        object.__setattr__(self, "_given", {"encoders": modules, "fusion": fusion_module})
        name = vlm_name_or_path if vlm_name_or_path is not None else vlm
        if name is None and config is None:
            name = "tiny"
        super().__init__(fields, vlm_name_or_path=name, action_head=action_head, **overrides)
        object.__setattr__(self, "_given", {})

    # -- construction ------------------------------------------------------------------------
    def _build(self, cfg: ModelConfig, action_head: nn.Module | None = None, **kw: Any) -> None:
        if cfg.sensors is None:
            raise ConfigError("MultiSensorVLA needs model.sensors (lidar / radar / imu encoders); for a camera-only "
                              "model use VLAModel")
        super()._build(cfg, action_head=action_head, **kw)
        s: MultiSensorConfig = cfg.sensors
        given = getattr(self, "_given", {}) or {}
        hidden = self.backbone.hidden_size
        self.sensor_encoders = nn.ModuleDict()
        for sensor in s.sensors:
            enc = given.get("encoders", {}).get(sensor)
            if enc is None:
                kwargs = dict(s.encoder_settings.get(sensor, {}), output_dim=getattr(s, _DIM_FIELD[sensor]))
                enc = SENSOR_ENCODERS.get(getattr(s, sensor))(**kwargs)
            self.sensor_encoders[sensor] = enc
        dims = [self.sensor_encoders[k].output_dim for k in s.sensors]
        self.fusion = given.get("fusion") or self._build_fusion(s, [hidden, *dims] if s.fuse_camera else dims)
        if given.get("fusion") is not None:  # a module given: it says whether the camera is one of its inputs
            if list(self.fusion.modality_dims) == [hidden, *dims]:
                fuse_camera = True
            elif list(self.fusion.modality_dims) == dims:
                fuse_camera = False
            else:
                raise ConfigError(f"the fusion was built for modality sizes {list(self.fusion.modality_dims)}; "
                                  f"the camera feature is {hidden} and the sensors give {dims}: build it with "
                                  f"modality_dims={[hidden, *dims]} or {dims}")
            if fuse_camera != s.fuse_camera:
                s = s.replace(fuse_camera=fuse_camera)
                cfg = cfg.replace(sensors=s)
            settings = {k: v for k, v in self.fusion.spec.items() if k != "modality_dims"}
            if "output_dim" in settings or "feature_dim" in settings or "query_dim" in settings:
                out = settings.get("output_dim", settings.get("feature_dim", settings.get("query_dim")))
                if out != s.fusion_dim:
                    s = s.replace(fusion_dim=int(out))
                    cfg = cfg.replace(sensors=s)
        self.fuse_camera = s.fuse_camera
        head_in = self.fusion.output_dim + (0 if s.fuse_camera else hidden)
        if self.head_caps.inputs != "pooled":
            raise ConfigError(f"MultiSensorVLA's action head reads the fused feature; the {cfg.action_head!r} head "
                              f"reads {self.head_caps.inputs}: choose mlp, gaussian, diffusion, transformer or flow")
        if action_head is None:
            self.action_head = ACTION_HEADS.get(cfg.action_head).from_config(cfg, input_dim=head_in)
        else:
            self.action_head.set_input_dim(head_in)
        self.waypoint_head = None
        if s.prediction_horizon > 0:  # (B, F) -> (B, H * 2)
            self.waypoint_head = nn.Sequential(nn.Linear(head_in, 256), nn.GELU(),
                                               nn.Linear(256, s.prediction_horizon * 2))
        self._last_waypoint_feature: torch.Tensor | None = None
        self.config = self.config.replace(sensors=s) if self.config.sensors != s else self.config

    @staticmethod
    def _build_fusion(s: MultiSensorConfig, dims: list[int]) -> Fusion:
        cls = FUSIONS.get(s.fusion)
        if s.fusion == "gated":
            return cls(modality_dims=dims, output_dim=s.fusion_dim)
        if s.fusion == "cross-modal":
            if len(dims) < 2:
                raise ConfigError("model.sensors.fusion: cross-modal fusion needs the camera and at least one sensor "
                                  "(set fuse_camera: true) or two sensors")
            return cls(query_dim=s.fusion_dim, key_dim=s.fusion_dim, num_heads=s.fusion_heads, modality_dims=dims)
        if s.fusion == "hierarchical":
            return cls(feature_dim=s.fusion_dim, num_spatial_layers=1, num_temporal_layers=1,
                       num_heads=s.fusion_heads, modality_dims=dims)
        return cls(feature_dim=s.fusion_dim, num_heads=s.fusion_heads, modality_dims=dims)

    @property
    def modality_names(self) -> list[str]:
        """The fusion's inputs in order (``fusion.last_weights`` columns of a gated fusion)."""
        return (["camera"] if self.fuse_camera else []) + list(self.sensor_encoders)

    # -- the fused feature -------------------------------------------------------------------
    def _add_sensor_noise(self, batch: Mapping[str, Any]) -> Mapping[str, Any]:
        """Training-time noise augmentation: with probability ``sensor_noise`` per sample, one sensor drawn
        uniformly gets Gaussian noise of U(0, ``sensor_noise_scale``) x ``SENSOR_NOISE_STD`` on what it reported
        (its mask), the labels unchanged; a fusion thereby sees present-but-wrong readings, which dropout alone
        never shows it."""
        s = self.config.sensors
        sensors = [k for k in self.sensor_encoders if f"observation.{k}" in batch]
        if not sensors:
            return batch
        out = dict(batch)
        b = torch.as_tensor(batch[f"observation.{sensors[0]}"]).shape[0]
        hit = torch.rand(b, device=self.device) < s.sensor_noise  # (B,) corrupt this sample
        which = torch.randint(len(sensors), (b,), device=self.device)  # (B,) which of its sensors
        scale = torch.rand(b, device=self.device) * s.sensor_noise_scale  # (B,)
        for i, sensor in enumerate(sensors):
            rows = hit & (which == i)
            if not bool(rows.any()):
                continue
            key = f"observation.{sensor}"
            x = torch.as_tensor(batch[key], device=self.device).float()  # (B, N, C)
            std = torch.zeros(x.shape[-1], device=self.device)
            unit = torch.tensor(SENSOR_NOISE_STD[sensor], device=self.device)[: x.shape[-1]]
            std[: unit.numel()] = unit
            noise = torch.randn_like(x) * std * (scale * rows).view(-1, *[1] * (x.dim() - 1))  # (B, N, C)
            mask = batch.get(key + "_mask")
            if mask is not None:  # missed rays and padding stay zeros
                noise = noise * torch.as_tensor(mask, device=self.device).reshape(*x.shape[:-1], 1).to(x.dtype)
            out[key] = x + noise
        return out

    def sensor_features(self, batch: Mapping[str, Any]) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Each sensor's feature (B, D_i) and which are present (B, M) bool (all-zero masks: absent)."""
        if self.training and self.config.sensors.sensor_noise > 0:
            batch = self._add_sensor_noise(batch)
        feats, present = [], []
        b = None
        for sensor, enc in self.sensor_encoders.items():
            key = f"observation.{sensor}"
            if key not in batch:
                raise ConfigError(f"the batch has no {key!r} for the {sensor} encoder; give it (driving datasets "
                                  f"and env observations have it) or build the model without {sensor}")
            f = enc.encode_batch(batch, key, device=self.device)  # (B, D)
            b = f.shape[0]
            mask = batch.get(key + "_mask")
            if mask is None:
                p = torch.ones(b, dtype=torch.bool, device=self.device)
            else:
                m = torch.as_tensor(mask, device=self.device)
                p = m.reshape(b, -1).bool().any(dim=1) if m.dim() > 1 else m.bool().reshape(b)
            feats.append(f)
            present.append(p)
        present_t = torch.stack(present, dim=1)  # (B, M)
        drop = self.config.sensors.sensor_dropout
        if self.training and drop > 0:  # sensor dropout: learn to drive when a sensor fails
            present_t = present_t & (torch.rand(present_t.shape, device=self.device) >= drop)
        return feats, present_t

    def fuse(self, camera: torch.Tensor, batch: Mapping[str, Any]) -> torch.Tensor:
        """The fused feature (B, F) of the camera/VLM feature (B, H) and the batch's sensors."""
        feats, present = self.sensor_features(batch)
        if self.fuse_camera:
            keep = torch.cat([torch.ones_like(present[:, :1]), present], dim=1)  # (B, 1+M)
            return self.fusion([camera, *feats], present=keep)  # (B, F)
        return torch.cat([camera, self.fusion(feats, present=present)], dim=-1)  # (B, H + F)

    def features_and_context(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        camera, ctx = super().features_and_context(batch)  # (B, H)
        fused = self.fuse(camera, batch)  # (B, F)
        self._last_waypoint_feature = fused
        return fused, ctx

    # -- the policy interface ----------------------------------------------------------------
    def forward(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        """Action loss (+ ``waypoint_weight`` x waypoint loss when the batch has waypoint labels)."""
        loss, info = super().forward(batch)
        s = self.config.sensors
        if self.waypoint_head is not None and s.waypoint_key in batch:
            target = torch.as_tensor(batch[s.waypoint_key], device=self.device).float()  # (B, H, 2)
            if target.shape[1:] != (s.prediction_horizon, 2):
                raise ConfigError(f"batch[{s.waypoint_key!r}] is {tuple(target.shape)} but the model predicts "
                                  f"{s.prediction_horizon} waypoints; set model.sensors.prediction_horizon: "
                                  f"{target.shape[1]}")
            pred = self.waypoint_head(self._last_waypoint_feature).view(-1, s.prediction_horizon, 2)  # (B, H, 2)
            wp_loss = F.smooth_l1_loss(pred, target / WAYPOINT_SCALE)
            loss = loss + s.waypoint_weight * wp_loss
            info["waypoint_loss"] = float(wp_loss.detach())
            info["loss"] = float(loss.detach())
        return loss, info

    @torch.no_grad()
    def predict_waypoints(self, obs: Mapping[str, Any]) -> torch.Tensor:
        """Future ego positions (B, prediction_horizon, 2) in metres (x forward, y left)."""
        if self.waypoint_head is None:
            raise ConfigError("this model predicts no waypoints; build it with prediction_horizon > 0")
        fused, _ = self.features_and_context(obs)
        return self.waypoint_head(fused).view(fused.shape[0], -1, 2) * WAYPOINT_SCALE  # (B, H, 2)

    def prepare_observation(self, env_obs: Mapping[str, Any], instruction: str | list[str] = "") -> dict[str, Any]:
        """As ``VLAModel.prepare_observation``, plus the env's sensor readings (``lidar``, ``radar``, ``imu`` and
        their masks) as ``observation.<sensor>`` with a batch dimension."""
        batch = super().prepare_observation(env_obs, instruction)
        for sensor in self.sensor_encoders:
            for suffix, ndim in (("", 2), ("_mask", 1)):
                v = env_obs.get(sensor + suffix)
                if v is None or f"observation.{sensor}{suffix}" in batch:
                    continue
                t = torch.as_tensor(np.asarray(v, dtype=np.float32))
                batch[f"observation.{sensor}{suffix}"] = (t.unsqueeze(0) if t.dim() == ndim else t).to(self.device)
        return batch

    def summary(self) -> str:
        lines = [super().summary()]
        for name, mod in [*self.sensor_encoders.items(), ("fusion", self.fusion)]:
            n = sum(p.numel() for p in mod.parameters())
            lines.append(f"  {name:15s} {type(mod).__name__:16s} {n:>12,}")
        return "\n".join(lines)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, map_location: str | torch.device = "cpu",
                        **kw: Any) -> "MultiSensorVLA":
        model = load_multisensor(directory, map_location=map_location)
        return model


def load_multisensor(directory: str | os.PathLike, cls: type | None = None,
                     map_location: str | torch.device = "cpu") -> MultiSensorVLA:
    """A MultiSensorVLA from a checkpoint folder (``config.json`` with ``sensors``), in eval mode; the
    loader that ``VLAModel.from_pretrained`` uses for such folders (``models/formats.py``)."""
    d = Path(directory)
    cfg_file, data = read_config_json(d)
    if not isinstance(data, dict) or data.get("sensors") is None:
        raise CheckpointError(f"checkpoint {d} has no sensors; load it with VLAModel.from_pretrained")
    target = cls if isinstance(cls, type) and issubclass(cls, MultiSensorVLA) else MultiSensorVLA
    return load_native(target, d, cfg_file, data, map_location)
