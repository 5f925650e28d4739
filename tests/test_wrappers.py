"""SmolVLAWrapper and OpenVLAWrapper: small offline builds train, round-trip as their own class, and
load real parts from local folders (a SmolVLM folder; DINOv2 + SigLIP + Llama folders)."""

from __future__ import annotations

import pytest
import torch

from vla_engine.models import DiffusionActionHead, VLAModel
from vla_engine.models.action_tokens import ActionTokenHead
from vla_engine.models.flow_head import FlowMatchingActionHead
from vla_engine.models.fused_vision import DinoSiglipEncoder
from vla_engine.models.wrappers import OpenVLAWrapper, SmolVLAWrapper

transformers = pytest.importorskip("transformers")

from .toy_training import UNIT_STATS as UNIT, fit_batch, vla_batch

SMALL = dict(action_dim=2, state_dim=2, image_size=32, vision_patch_size=8, vision_dim=32, llm_hidden_size=64,
             llm_intermediate_size=128, head_hidden_dim=64)


def _train_and_round_trip(model: VLAModel, tmp_path, steps: int = 15) -> None:
    model.set_normalization({"action": UNIT, "observation.state": UNIT})
    batch = vla_batch(model.config.chunk_size, b=4)
    first, last = fit_batch(model, batch, steps, lr=2e-3)
    assert last < first, (first, last)
    model.eval()
    torch.manual_seed(3)
    pred = model.predict_action_chunk(batch)
    model.save_pretrained(tmp_path / "ckpt")
    again = type(model).from_pretrained(tmp_path / "ckpt")
    assert type(again) is type(model)
    torch.manual_seed(3)
    assert torch.allclose(again.predict_action_chunk(batch), pred, atol=1e-5)


def test_smolvla_offline_cuts_the_lm_freezes_vision_and_uses_flow_matching(tmp_path):
    torch.manual_seed(0)
    model = SmolVLAWrapper(llm_num_layers=4, num_vlm_layers=2, chunk_size=4, n_action_steps=4, **SMALL)
    assert isinstance(model.action_head, FlowMatchingActionHead)
    assert model.config.vision_encoder == "smolvlm" and model.config.llm == "smolvlm"
    assert int(model.backbone.hf_config.num_hidden_layers) == 2  # the first half of the layers
    assert not any(p.requires_grad for p in model.vision_encoder.parameters())  # frozen SigLIP
    _train_and_round_trip(model, tmp_path)


def test_smolvla_loads_a_local_smolvlm_folder_cut_to_its_first_layers(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tf = transformers
    vlm_cfg = tf.Idefics3Config(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        text_config=dict(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=4),
        scale_factor=2)
    tf.Idefics3ForConditionalGeneration(vlm_cfg).save_pretrained(tmp_path / "smolvlm")
    model = SmolVLAWrapper(str(tmp_path / "smolvlm"), action_dim=2, state_dim=2, chunk_size=4, n_action_steps=4,
                           image_size=32, head_hidden_dim=64)
    assert model.config.llm_pretrained == str(tmp_path / "smolvlm") and model.config.llm_layers == 2
    assert int(model.backbone.hf_config.num_hidden_layers) == 2
    model = SmolVLAWrapper(str(tmp_path / "smolvlm"), action_head="diffusion", num_vlm_layers=0, action_dim=2,
                           image_size=32, chunk_size=4, n_action_steps=4)
    assert isinstance(model.action_head, DiffusionActionHead)
    assert int(model.backbone.hf_config.num_hidden_layers) == 4  # 0 keeps every layer


def test_openvla_offline_fuses_dino_and_siglip_and_predicts_action_tokens(tmp_path):
    torch.manual_seed(0)
    model = OpenVLAWrapper(**SMALL)
    enc = model.vision_encoder
    assert isinstance(enc, DinoSiglipEncoder) and isinstance(model.action_head, ActionTokenHead)
    assert enc.out_dim == enc.dino.out_dim + enc.siglip.out_dim
    tokens = enc(torch.rand(2, 3, 32, 32))
    assert tokens.shape == (2, (32 // 8) ** 2, enc.out_dim)  # one token per patch, features side by side
    assert model.action_head.n_bins == 256
    _train_and_round_trip(model, tmp_path, steps=25)


def test_openvla_with_the_seed_recipe_diffusion_head(tmp_path):
    torch.manual_seed(0)
    model = OpenVLAWrapper(action_head=DiffusionActionHead(action_dim=2, chunk_size=4, hidden_dim=64),
                           **{k: v for k, v in SMALL.items() if k not in ("action_dim", "head_hidden_dim")})
    assert isinstance(model.action_head, DiffusionActionHead) and model.config.chunk_size == 4
    _train_and_round_trip(model, tmp_path, steps=25)


def test_openvla_loads_dinov2_siglip_and_llama_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tf = transformers
    tf.Dinov2Model(tf.Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=32,
                                   patch_size=8)).save_pretrained(tmp_path / "dino")
    tf.SiglipVisionModel(tf.SiglipVisionConfig(hidden_size=48, intermediate_size=64, num_hidden_layers=1,
                                               num_attention_heads=2, image_size=32, patch_size=16)
                         ).save_pretrained(tmp_path / "siglip")
    tf.LlamaForCausalLM(tf.LlamaConfig(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                                       num_attention_heads=4, num_key_value_heads=4)).save_pretrained(tmp_path / "llama")
    model = OpenVLAWrapper(dinov2=str(tmp_path / "dino"), siglip=str(tmp_path / "siglip"), llm=str(tmp_path / "llama"),
                           action_dim=2, state_dim=2, image_size=32)
    enc = model.vision_encoder
    assert (enc.dino.out_dim, enc.siglip.out_dim) == (32, 48)
    # SigLIP's 2x2 grid is resampled onto DINOv2's 4x4 grid
    assert enc(torch.rand(1, 3, 32, 32)).shape == (1, 16, 80)
    assert model.config.llm == "llama" and model.backbone.hidden_size == 64
    _train_and_round_trip(model, tmp_path, steps=25)
