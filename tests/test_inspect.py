"""Facts about a model before it trains (vla_engine.models.inspect): token counts, the training-memory
estimate, parameter counts per part, the module tree, and one probing forward pass."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from vla_engine.config.base import ConfigError
from vla_engine.config.model_config import ModelConfig
from vla_engine.models.inspect import (dataset_batch, estimate_training_memory, format_bytes, forward_probe,
                                       image_tokens_per_sample, module_tree, part_counts, synthetic_batch,
                                       vision_tokens)


@pytest.fixture(scope="module")
def built():
    from vla_engine.models import VLAModel

    cfg = ModelConfig(chunk_size=4)
    return cfg, VLAModel(cfg)


def test_token_counts_from_the_config_match_the_built_model(built):
    cfg, model = built
    assert vision_tokens(cfg) == vision_tokens(cfg, model) == cfg.vision.pool ** 2
    two_cams = cfg.replace(image_keys=["observation.images.front", "observation.images.wrist"], n_obs_steps=2)
    assert image_tokens_per_sample(two_cams) == 4 * vision_tokens(cfg)
    assert vision_tokens(cfg.replace(projector="perceiver", projector_num_tokens=8)) == 8


def test_memory_estimate_grows_with_batch_and_shrinks_with_precision_and_freezing(built):
    cfg, model = built
    n, t = model.num_parameters(), model.num_parameters(trainable_only=True)
    fp32 = estimate_training_memory(cfg, n, t, 32, "fp32", model)
    assert fp32["total"] == sum(v for k, v in fp32.items() if k != "total")
    assert fp32["weights"] == 4 * n and fp32["optimizer (AdamW moments)"] == 8 * t
    assert estimate_training_memory(cfg, n, t, 64, "fp32", model)["activations"] == 2 * fp32["activations"]
    assert estimate_training_memory(cfg, n, t, 32, "bf16-mixed", model)["activations"] == fp32["activations"] / 2
    frozen = estimate_training_memory(cfg, n, t, 32, "fp32", model, freeze_vision=True)
    assert frozen["activations"] < fp32["activations"]
    with pytest.raises(ValueError, match="precision 'fp8' is not one of: fp32"):
        estimate_training_memory(cfg, n, t, 32, "fp8")
    with pytest.raises(ValueError, match="batch size 0"):
        estimate_training_memory(cfg, n, t, 0)


def test_parts_add_up_and_the_tree_folds_repeated_layers(built):
    cfg, model = built
    rows = part_counts(model)
    assert [r[0] for r in rows[:2]] == ["vision_encoder", "projector"]
    assert sum(r[2] for r in rows) == model.num_parameters()
    tree = module_tree(model)
    assert tree.startswith("model (VLAModel)") and f"x{cfg.llm_num_layers}" in tree
    assert format_bytes(3 * 1024 ** 3) == "3.00 GiB" and format_bytes(512) == "512 B"


def test_forward_probe_reports_shapes_loss_and_latency(built):
    cfg, model = built
    probe = forward_probe(model, synthetic_batch(cfg), repeats=2)
    assert probe.chunk_shape == (1, cfg.chunk_size, cfg.action_dim)
    assert math.isfinite(probe.loss) and len(probe.latency_ms) == 2 and probe.median_ms > 0
    assert probe.inputs["observation.images.front"].startswith("(2, 3, 96, 96)")
    assert probe.inputs["task"] == "2 instruction(s)" and "action_is_pad" not in probe.inputs
    assert {"vision_encoder", "action_head"} <= set(probe.outputs)


def test_a_dataset_sample_must_fit_the_model(built):
    cfg, _ = built
    data = SimpleNamespace(repo_id="local/push", action_dim=3, state_dim=2, image_keys=["observation.images.front"])
    with pytest.raises(ConfigError, match="set action_dim to 3"):
        dataset_batch(data, cfg)
    data.action_dim = 2
    with pytest.raises(ConfigError, match="set state_dim to 2"):
        dataset_batch(data, cfg.replace(state_dim=5))
    data.image_keys = ["observation.images.top"]
    with pytest.raises(ConfigError, match="not cameras of local/push"):
        dataset_batch(data, cfg)
