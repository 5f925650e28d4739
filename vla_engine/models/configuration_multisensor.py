"""Settings of the multi-sensor (driving) model: which encoder reads each sensor, how the features fuse, and
whether the model also predicts future waypoints. Light (no torch). ``model.sensors`` in a config file:

    sensors: {lidar: pointnet, radar: radar, imu: imu, fusion: gated, fusion_dim: 256, prediction_horizon: 6}

A model config with ``sensors`` set builds a ``MultiSensorVLA`` (``models/multisensor.py``); without it, a
``VLAModel``. Each sensor reads the batch key ``observation.<sensor>`` and its mask ``observation.<sensor>_mask``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..config.base import ConfigBase

SENSOR_NAMES = ("lidar", "radar", "imu")

# One unit of sensor noise per input channel (Gaussian std), shared by training-time noise augmentation
# (``sensor_noise``) and the test-time corruption of ``envs/driving/corruption.py``:
# lidar x, y, z (m) and intensity; radar range (m), azimuth (rad), radial velocity (m/s), rcs (dBsm);
# IMU accelerometer (m/s^2) and gyro (rad/s).
SENSOR_NOISE_STD = {"lidar": (1.0, 1.0, 1.0, 0.1), "radar": (1.0, 0.05, 1.0, 1.0),
                    "imu": (1.0, 1.0, 1.0, 0.1, 0.1, 0.1)}


@dataclass
class MultiSensorConfig(ConfigBase):
    """Sensor encoders, their fusion with the camera/VLM feature, and the waypoint head."""

    _section: ClassVar[str] = "model.sensors"

    lidar: str | None = "pointnet"  # a SENSOR_ENCODERS name for observation.lidar (pointnet, point-transformer); null = no lidar
    radar: str | None = "radar"  # a SENSOR_ENCODERS name for observation.radar; null = no radar
    imu: str | None = "imu"  # a SENSOR_ENCODERS name for observation.imu; null = no IMU
    lidar_dim: int = 256  # lidar feature size (the encoder's output_dim)
    radar_dim: int = 128  # radar feature size
    imu_dim: int = 64  # IMU feature size
    # extra constructor arguments per sensor, e.g. {lidar: {hidden_dims: [64, 128], k: 8}}
    encoder_settings: dict = field(default_factory=dict)
    fusion: str = "gated"  # a FUSIONS name: gated concat cross-modal hierarchical
    fusion_dim: int = 256  # width of the fused feature the action head reads
    fusion_heads: int = 4  # attention heads of the concat / cross-modal / hierarchical fusions
    # the fusion sees the camera/VLM feature as one modality (true), or fuses the other sensors only and the
    # camera feature is concatenated after it (false; the seed's GatedFusion(modality_dims=[lidar, radar, imu]))
    fuse_camera: bool = True
    prediction_horizon: int = 0  # future waypoints (x, y) predicted beside the controls; 0 = none
    waypoint_key: str = "action.waypoints"  # the batch key of the waypoint labels (H, 2) in metres, ego frame
    waypoint_weight: float = 1.0  # weight of the waypoint loss beside the action loss
    sensor_dropout: float = 0.0  # training: each sensor is dropped (marked absent) per sample with this probability
    # training: with this probability per sample, one of its sensors (drawn uniformly) gets Gaussian noise of
    # U(0, sensor_noise_scale) x SENSOR_NOISE_STD, so the fusion learns to trust a present-but-wrong sensor less
    sensor_noise: float = 0.0
    sensor_noise_scale: float = 5.0  # the largest noise drawn, in units of SENSOR_NOISE_STD

    def validate(self) -> None:
        from ..registry import FUSIONS, SENSOR_ENCODERS

        for name in SENSOR_NAMES:
            if getattr(self, name) is not None:
                self._check_choice(name, SENSOR_ENCODERS)
            self._check_range(f"{name}_dim", 1, 8192)
        if not self.sensors:
            self._fail("lidar", "no sensor is chosen; choose an encoder for lidar, radar or imu, or leave "
                                "model.sensors out for a camera-only VLAModel")
        unknown = sorted(set(self.encoder_settings) - set(SENSOR_NAMES))
        if unknown:
            self._fail("encoder_settings", f"names {', '.join(unknown)}; the sensors are {', '.join(SENSOR_NAMES)}")
        self._check_choice("fusion", FUSIONS)
        self._check_range("fusion_dim", 1, 8192)
        self._check_range("fusion_heads", 1, 64)
        if self.fusion != "gated" and self.fusion_dim % self.fusion_heads:
            self._fail("fusion_dim", f"{self.fusion_dim} must be divisible by fusion_heads {self.fusion_heads}")
        self._check_range("prediction_horizon", 0, 100)
        self._check_range("waypoint_weight", 0.0)
        self._check_range("sensor_dropout", 0.0, 0.95)
        self._check_range("sensor_noise", 0.0, 1.0)
        self._check_range("sensor_noise_scale", 0.0, 100.0)

    @property
    def sensors(self) -> list[str]:
        """The chosen sensors, in order (lidar, radar, imu)."""
        return [s for s in SENSOR_NAMES if getattr(self, s) is not None]

    def sensor_key(self, sensor: str) -> str:
        return f"observation.{sensor}"


def multisensor_config(value: Any) -> MultiSensorConfig | None:
    """``model.sensors`` as a MultiSensorConfig (a mapping of its fields, or None)."""
    if value is None or isinstance(value, MultiSensorConfig):
        return value
    if isinstance(value, ConfigBase):
        value = value.to_dict()
    if not isinstance(value, dict):
        from ..config.base import ConfigError

        raise ConfigError(f"model.sensors: expected a mapping of sensor settings (lidar, radar, imu, fusion, ...), "
                          f"got {value!r}")
    return MultiSensorConfig.from_dict(dict(value))
