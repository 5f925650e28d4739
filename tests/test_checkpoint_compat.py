"""Freezing and LoRA adapters are model state, not model-config fields; checkpoints of either form load.

A checkpoint's config.json holds the model fields and, for a model with adapters, ``"adapters"``. Files
written by earlier versions name ``freeze_vision`` / ``freeze_vlm`` and ``lora_*`` among the model fields:
they load with a one-line note, the LoRA fields becoming the adapters (``lora_r`` 0: none).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from vla_engine.config.model_config import LoRASpec, ModelConfig, read_model_dict
from vla_engine.models import SmolVLAWrapper, VLAModel

SMALL = dict(vision_dim=8, image_size=32, vision_pool=2, llm_hidden_size=32, llm_num_layers=1, llm_num_heads=2,
             llm_intermediate_size=64, head_hidden_dim=16, state_dim=3, action_dim=2, random_shift=0)
SHIPPED = Path(__file__).resolve().parents[1] / "vla_engine" / "pretrained" / "push-tiny" / "checkpoint"


def _batch(n: int = 3) -> dict:
    g = torch.Generator().manual_seed(0)
    return {"observation.images.front": torch.rand(n, 3, 32, 32, generator=g),
            "observation.state": torch.randn(n, 3, generator=g), "task": "push the red block"}


def _lora_model() -> VLAModel:
    torch.manual_seed(0)
    model = VLAModel(SMALL).add_lora(r=4, alpha=8, dropout=0.0)
    with torch.no_grad():  # B starts at zero: give the adapters an effect that a wrong load would lose
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    return model.eval()


def _rewrite_as_old(folder: Path, **legacy) -> None:
    f = folder / "config.json"
    data = json.loads(f.read_text())
    data.pop("adapters", None)
    data.update(legacy)
    f.write_text(json.dumps(data))


def test_new_checkpoints_record_adapters_beside_the_model_fields(tmp_path):
    model = _lora_model()
    model.save_pretrained(tmp_path / "ckpt")
    data = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert data["adapters"] == {"type": "lora", "r": 4, "alpha": 8, "dropout": 0.0,
                                "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"], "scope": "lm"}
    assert not any(k.startswith(("lora_", "freeze_")) for k in data)
    assert ModelConfig.from_dict(data).action_dim == 2  # a reader of the model fields alone skips the record
    loaded = VLAModel.from_pretrained(tmp_path / "ckpt")
    assert loaded.lora_spec == model.lora_spec
    torch.testing.assert_close(loaded.predict_action_chunk(_batch()), model.predict_action_chunk(_batch()),
                               rtol=0, atol=0)
    model.merge_lora()  # merged: plain weights and no record
    assert model.lora_spec is None
    model.save_pretrained(tmp_path / "merged")
    assert "adapters" not in json.loads((tmp_path / "merged" / "config.json").read_text())


def test_old_lora_fields_load_into_a_lora_model_strictly(tmp_path, caplog):
    model = _lora_model()
    want = model.predict_action_chunk(_batch())
    model.save_pretrained(tmp_path / "old")
    _rewrite_as_old(tmp_path / "old", lora_r=4, lora_alpha=8, lora_dropout=0.0,
                    lora_target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], lora_scope="lm",
                    freeze_vision=False, freeze_vlm=False)
    with caplog.at_level(logging.WARNING, logger="vla_engine.config"):
        loaded = VLAModel.from_pretrained(tmp_path / "old")  # strict: every saved adapter weight has its place
    assert loaded.lora_spec == LoRASpec(r=4, alpha=8, dropout=0.0, scope="lm")
    assert any(k.endswith("lora_A.default.weight") for k in loaded.state_dict())
    torch.testing.assert_close(loaded.predict_action_chunk(_batch()), want, rtol=0, atol=0)
    notes = [r.getMessage() for r in caplog.records]
    assert any("'model.lora_*'" in m and "'adapters'" in m and "old" in m for m in notes), notes
    assert all("\n" not in m for m in notes)
    # saved again, the file has the new form
    loaded.save_pretrained(tmp_path / "again")
    assert json.loads((tmp_path / "again" / "config.json").read_text())["adapters"]["r"] == 4


def test_old_freeze_fields_load_with_a_note_and_freeze_nothing(tmp_path, caplog):
    VLAModel(SMALL).save_pretrained(tmp_path / "old")
    _rewrite_as_old(tmp_path / "old", freeze_vision=True, freeze_vlm=True, lora_r=0, lora_alpha=32)
    with caplog.at_level(logging.WARNING, logger="vla_engine.config"):
        loaded = VLAModel.from_pretrained(tmp_path / "old")
    notes = [r.getMessage() for r in caplog.records]
    for key in ("freeze_vision", "freeze_vlm"):
        assert any(f"'model.{key}'" in m and f"training.{key}" in m for m in notes), notes
    assert loaded.lora_spec is None and not loaded.vision_frozen and not loaded.vlm_frozen  # training decides
    assert all(p.requires_grad for p in loaded.parameters())


def test_shipped_checkpoints_load(tmp_path, caplog):
    # the shipped push-tiny as it was first written (flat part fields, lora_* / freeze_* in the model config),
    # kept in tests/data: it loads, with notes, into the same model as the shipped file in today's layout
    old_cfg = Path(__file__).resolve().parent / "data" / "push-tiny-config-v0.json"
    data = json.loads(old_cfg.read_text())
    assert data["lora_r"] == 0 and "freeze_vision" in data  # written before adapters became state
    cfg, adapters = read_model_dict(data, where=str(old_cfg))
    assert adapters is None and cfg.action_dim == data["action_dim"]
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "config.json").write_text(old_cfg.read_text())
    for f in SHIPPED.iterdir():
        if f.name != "config.json":
            (tmp_path / "old" / f.name).symlink_to(f)
    with caplog.at_level(logging.WARNING, logger="vla_engine.config"):
        old = VLAModel.from_pretrained(tmp_path / "old")
    assert any("lora" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="vla_engine.config"):
        model = VLAModel.from_pretrained(SHIPPED)
    assert not caplog.records  # the shipped file is in today's layout
    assert model.lora_spec is None and not model.training and model.config == old.config


def test_a_bad_adapter_record_is_a_one_line_checkpoint_error(tmp_path):
    from vla_engine.models import CheckpointError

    VLAModel(SMALL).save_pretrained(tmp_path / "ckpt")
    f = tmp_path / "ckpt" / "config.json"
    f.write_text(json.dumps(dict(json.loads(f.read_text()), adapters={"type": "lora", "r": 0})))
    with pytest.raises(CheckpointError, match=r"adapters\.r: 0 is out of range") as e:
        VLAModel.from_pretrained(tmp_path / "ckpt")
    assert "\n" not in str(e.value)


def test_freezing_is_state_set_by_the_methods():
    model = VLAModel(SMALL)
    assert not model.vision_frozen and all(p.requires_grad for p in model.parameters())
    model.freeze_vision()
    model.train()
    assert model.vision_frozen and not model.vlm_frozen
    assert not model.vision_encoder.training and model.backbone.training  # frozen parts stay in eval mode
    assert not any(p.requires_grad for p in model.vision_encoder.parameters())
    loss, _ = model({**_batch(), "action": torch.randn(3, 2)})
    loss.backward()
    assert all(p.grad is None for p in model.vision_encoder.parameters())
    assert model.projector.parameters().__next__().grad is not None
    model.freeze_vision(False)
    model.freeze_vlm()
    assert model.vision_frozen and model.vlm_frozen and not model.backbone.training
    assert not any(p.requires_grad for p in model.backbone.parameters())
    model.freeze_vlm(False)
    model.train()
    assert model.vision_encoder.training and all(p.requires_grad for p in model.parameters())
    # the constructor keywords (and freeze_* in a dict of fields, as earlier versions took them) call the methods
    assert VLAModel(SMALL, freeze_vlm=True).vlm_frozen
    assert VLAModel(dict(SMALL, freeze_vision=True)).vision_frozen
    assert "freeze_vision" not in VLAModel(SMALL, freeze_vision=True).config.to_dict()


def test_lora_with_a_frozen_vlm_trains_the_adapters_only_in_the_lm():
    model = VLAModel(SMALL, freeze_vlm=True).add_lora(r=2, alpha=4)
    model.train()
    assert model.backbone.training  # the adapters train (dropout on)
    assert all(("lora_" in n) == p.requires_grad for n, p in model.backbone.named_parameters())
    assert not any(p.requires_grad for p in model.vision_encoder.parameters())


def test_smolvla_wrapper_freezes_its_vision_tower_by_default():
    small = dict(vision_dim=32, image_size=32, llm_hidden_size=32, llm_num_heads=2, llm_intermediate_size=64,
                 action_dim=2, state_dim=3, chunk_size=2, n_action_steps=2, head_hidden_dim=16)
    model = SmolVLAWrapper(**small)
    assert model.vision_frozen and not model.vlm_frozen
    assert not any(p.requires_grad for p in model.vision_encoder.parameters())
    assert not SmolVLAWrapper(freeze_vision=False, **small).vision_frozen
