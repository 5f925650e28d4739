"""Full VLMs as backbones with their own vision towers: SmolVLM (Idefics3) and Qwen2-VL.

Tiny VLMs are built from configs and saved with save_pretrained; VLAModel loads them offline from the
folder, and each part must compute what the VLM itself computes: the vision part = the VLM's
get_image_features (with the family's image processor's pixels), the text part = the VLM's text model
(for Qwen2-VL: its M-RoPE model on a text-only input = our plain Qwen2 with 1-D RoPE).
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from vla_engine.config.base import ConfigError
from vla_engine.models import VLAModel, create_vla_model
from vla_engine.models._util import _import_transformers
from vla_engine.models.vla import resolve_vlm

torch.set_num_threads(2)
tf = _import_transformers()

TEXT = dict(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2)
SMALL = dict(image_size=32, head_hidden_dim=32, max_text_tokens=16, state_dim=3, action_dim=2, chunk_size=2)


def tiny_idefics3() -> "tf.Idefics3ForConditionalGeneration":
    cfg = tf.Idefics3Config(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        text_config=dict(model_type="llama", pad_token_id=0, tie_word_embeddings=False, **TEXT),
        scale_factor=2, image_token_id=299, pad_token_id=0)
    return tf.Idefics3ForConditionalGeneration(cfg).eval()


def tiny_qwen2_vl() -> "tf.Qwen2VLForConditionalGeneration":
    cfg = tf.Qwen2VLConfig(
        vision_config=dict(depth=1, embed_dim=32, hidden_size=64, num_heads=2, patch_size=8, spatial_merge_size=2,
                           temporal_patch_size=2),
        text_config=dict(rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]}, tie_word_embeddings=True, **TEXT),
        image_token_id=299, video_token_id=298, vision_start_token_id=297, vision_end_token_id=296)
    return tf.Qwen2VLForConditionalGeneration(cfg).eval()


FAMILIES = {"smolvlm": tiny_idefics3, "qwen2-vl": tiny_qwen2_vl}


@pytest.fixture(scope="module")
def vlm_dirs(tmp_path_factory):
    """family -> (folder, the VLM itself); the Qwen2-VL folder also holds a tokenizer, SmolVLM's has none."""
    torch.manual_seed(0)
    out = {}
    for family, make in FAMILIES.items():
        d = tmp_path_factory.mktemp(family.replace("-", "_"))
        vlm = make()
        vlm.save_pretrained(d)
        if family == "qwen2-vl":
            from vla_engine.models import build_byte_tokenizer

            build_byte_tokenizer().save_pretrained(d)
        out[family] = (str(d), vlm)
    return out


def load(folder: str, family: str, **kw) -> VLAModel:
    return VLAModel(vision_encoder=family, llm=family, vision_pretrained=folder, llm_pretrained=folder, **SMALL, **kw)


def make_batch(b: int = 4, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"observation.images.front": torch.rand(b, 3, 32, 32, generator=g),
            "observation.state": torch.randn(b, 3, generator=g),
            "task": ["pick up the red block", "push the cube left", "open", "pick up the red block"][:b],
            "action": torch.randn(b, 2, 2, generator=g), "action_is_pad": torch.zeros(b, 2, dtype=torch.bool)}


# ------------------------------------------------------------------------------------------------
def test_smolvlm_parts_compute_what_the_vlm_computes(vlm_dirs, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder, vlm = vlm_dirs["smolvlm"]
    model = load(folder, "smolvlm").eval()
    assert model.vision_encoder.out_dim == 64 and model.vision_encoder.num_tokens == 4  # 4x4 patches, shuffle 2
    assert type(model.backbone.lm).__name__ == "LlamaForCausalLM" and len(model.tokenizer) == 259  # byte fallback
    images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0  # (B, 3, 32, 32) in [0, 1]
    proc = tf.Idefics3ImageProcessor(do_resize=False, do_image_splitting=False, max_image_size={"longest_edge": 32})
    ref_pixels = proc([[im] for im in images], return_tensors="pt")["pixel_values"]  # (B, 1, 3, 32, 32)
    with torch.no_grad():
        pixels = model.vision_encoder.pixel_values(x)  # (B, 3, 32, 32)
        torch.testing.assert_close(pixels, ref_pixels[:, 0], atol=1e-5, rtol=0)
        # SmolVLM's patch positions are 0..P-1 (transformers <= 4.54); 4.55+ in float32 buckets them one
        # row/column low (a transformers bug): the reference gets the trained positions back
        seen = []

        def trained_positions(mod, args, out):  # forward hook on the tower's position embedding
            seen.append(args[0])
            return mod.weight[: out.shape[1]].expand_as(out)  # (B, P, Dv)

        hook = vlm.model.vision_model.embeddings.position_embedding.register_forward_hook(trained_positions)
        try:
            ref_feats = vlm.get_image_features(ref_pixels)  # (B, N, H)
        finally:
            hook.remove()
        assert seen[0].shape == (2, 16)
        torch.testing.assert_close(model.vision_encoder(x), ref_feats, atol=1e-5, rtol=1e-5)
        # the text part: same hidden states on the same embeddings (right padding masked), same logits
        emb = torch.randn(2, 6, 64)  # (B, L, H)
        mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
        ours = model.backbone(emb, attention_mask=mask)
        ref = vlm.model.text_model(inputs_embeds=emb, attention_mask=mask).last_hidden_state
        torch.testing.assert_close(ours[mask.bool()], ref[mask.bool()], atol=1e-5, rtol=1e-5)
        ids = torch.randint(0, 299, (2, 7))
        torch.testing.assert_close(model.backbone.lm(input_ids=ids).logits, vlm(input_ids=ids).logits,
                                   atol=1e-5, rtol=1e-5)


def test_qwen2_vl_parts_compute_what_the_vlm_computes(vlm_dirs, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder, vlm = vlm_dirs["qwen2-vl"]
    model = load(folder, "qwen2-vl").eval()
    assert type(model.backbone.lm).__name__ == "Qwen2ForCausalLM"
    assert model.backbone.lm.lm_head.weight is model.backbone.lm.get_input_embeddings().weight  # tied, as in the VLM
    assert model.vision_encoder.num_tokens == 4  # 32 px / 8 = 4x4 patches, merged 2x2
    images = np.random.default_rng(1).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0  # (B, 3, 32, 32)
    proc = tf.Qwen2VLImageProcessor(do_resize=False, patch_size=8, merge_size=2, temporal_patch_size=2)
    ref = proc(list(images), return_tensors="pt")
    with torch.no_grad():
        rows, grid = model.vision_encoder.pixel_inputs(x)  # the processor's patch rows and grid, in torch
        torch.testing.assert_close(rows, ref["pixel_values"], atol=1e-5, rtol=0)
        assert grid.tolist() == ref["image_grid_thw"].tolist() == [[1, 4, 4]] * 3
        feats = torch.stack(vlm.get_image_features(ref["pixel_values"], ref["image_grid_thw"]))  # (B, N, H)
        torch.testing.assert_close(model.vision_encoder(x), feats, atol=1e-5, rtol=1e-5)
        # M-RoPE on a text-only input (t = h = w positions) == the plain Qwen2's 1-D RoPE
        ids = torch.randint(0, 290, (2, 7))
        ref_h = vlm.model(input_ids=ids).last_hidden_state  # the VLM computes its own 3-D rope index
        torch.testing.assert_close(model.backbone(model.backbone.embed(ids)), ref_h, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(model.backbone.lm(input_ids=ids).logits, vlm(input_ids=ids).logits,
                                   atol=1e-5, rtol=1e-5)
        mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3])  # right padding: the VLAModel's positions
        pos = (mask.cumsum(1) - 1).clamp_min(0)
        ours = model.backbone(model.backbone.embed(ids), attention_mask=mask, position_ids=pos)
        ref_h = vlm.model(input_ids=ids, attention_mask=mask).last_hidden_state
        torch.testing.assert_close(ours[mask.bool()], ref_h[mask.bool()], atol=1e-5, rtol=1e-5)
    assert len(model.tokenizer) == 259 and model.tokenizer.pad_token == "<pad>"  # the folder's own tokenizer


@pytest.mark.parametrize("family", ["smolvlm", "qwen2-vl"])
def test_trains_and_round_trips_without_the_original_folder(vlm_dirs, family, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = tmp_path / "vlm"
    shutil.copytree(vlm_dirs[family][0], folder)
    torch.manual_seed(0)
    model = load(str(folder), family, random_shift=0)
    batch = make_batch()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    model.train()
    losses = []
    for _ in range(30):
        loss, _ = model(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
    model.eval()
    obs = {k: v for k, v in batch.items() if k not in ("action", "action_is_pad")}
    before = model.predict_action_chunk(obs)
    ckpt = model.save_pretrained(tmp_path / "ckpt")
    assert (ckpt / "vision" / "config.json").exists() and (ckpt / "llm" / "config.json").exists()
    shutil.rmtree(folder)  # the rebuild needs only the checkpoint
    loaded = VLAModel.from_pretrained(ckpt)
    assert type(loaded.vision_encoder) is type(model.vision_encoder)
    assert loaded.vision_encoder.hf_config.model_type == model.vision_encoder.hf_config.model_type
    torch.testing.assert_close(loaded.predict_action_chunk(obs), before, atol=0, rtol=0)


@pytest.mark.parametrize("family", ["smolvlm", "qwen2-vl"])
def test_llm_layers_keeps_the_first_decoder_layers(vlm_dirs, family, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder, vlm = vlm_dirs[family]
    model = load(folder, family, llm_layers=1).eval()
    assert len(model.backbone.decoder.layers) == 1
    assert model.backbone.hf_config.num_hidden_layers == 1 and model.config.llm_num_layers == 1
    ids = torch.randint(0, 290, (2, 5))
    text = vlm.model.text_model if family == "smolvlm" else vlm.model.language_model
    full_layers = text.layers
    try:  # the VLM's own text model with its first layer only
        text.layers = full_layers[:1]
        with torch.no_grad():
            ref = text(input_ids=ids).last_hidden_state
    finally:
        text.layers = full_layers
    with torch.no_grad():
        torch.testing.assert_close(model.backbone(model.backbone.embed(ids)), ref, atol=1e-5, rtol=1e-5)
    loaded = VLAModel.from_pretrained(model.save_pretrained(tmp_path / "cut"))
    assert len(loaded.backbone.decoder.layers) == 1
    with pytest.raises(ConfigError, match="llm_layers is 5 but the language model has 2 decoder layers"):
        load(folder, family, llm_layers=5)


def test_presets_and_folders_resolve_to_the_native_classes(vlm_dirs, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    batch = make_batch(2)
    small = dict(image_size=32, vision_patch_size=8, vision_dim=32, vision_num_heads=2, vision_num_layers=1,
                 llm_hidden_size=64, llm_num_layers=1, llm_intermediate_size=128, head_hidden_dim=32,
                 max_text_tokens=16, chunk_size=2)
    for preset, family in (("smolvlm-native", "smolvlm"), ("qwen2-vl-native", "qwen2-vl")):
        model = create_vla_model(preset, action_dim=2, state_dim=3, **small)  # offline, from scratch
        assert model.config.vision_encoder == model.config.llm == family
        assert model.vision_encoder.out_dim == model.backbone.hidden_size == 64
        assert model.vision_encoder.num_tokens == 4
        loss, _ = model(batch)
        loss.backward()
        assert torch.isfinite(loss) and any(p.grad is not None for p in model.vision_encoder.parameters())
        folder = vlm_dirs[family][0]
        fields = resolve_vlm(folder)  # a VLM folder maps to the classes that load it
        assert fields["vision_encoder"] == fields["llm"] == family
        assert fields["vision"]["pretrained"] == fields["llm_pretrained"] == folder
    model = VLAModel(vlm_name_or_path=vlm_dirs["smolvlm"][0], **SMALL)
    assert type(model.vision_encoder).__name__ == "SmolVLMVision"
    # the wrong family's folder: one clear line naming the fix
    with pytest.raises(ConfigError, match="is a 'qwen2_vl' model, not smolvlm.*set model.vision_encoder and "
                                          "model.llm to 'qwen2-vl'"):
        load(vlm_dirs["qwen2-vl"][0], "smolvlm")


def test_llm_layers_cuts_a_plain_pretrained_lm_too(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    lm = tf.Qwen2ForCausalLM(tf.Qwen2Config(**TEXT)).eval()
    lm.save_pretrained(tmp_path / "lm")
    model = VLAModel(llm="qwen2", llm_pretrained=str(tmp_path / "lm"), llm_layers=1, vision_encoder="cnn",
                     vision_dim=16, **SMALL).eval()
    assert len(model.backbone.decoder.layers) == 1 and model.config.llm_num_layers == 1
    ids = torch.randint(0, 290, (1, 5))
    lm.model.layers = lm.model.layers[:1]
    with torch.no_grad():
        torch.testing.assert_close(model.backbone(model.backbone.embed(ids)),
                                   lm.model(input_ids=ids).last_hidden_state, atol=1e-5, rtol=1e-5)
