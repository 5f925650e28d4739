"""The VLA model: every registry combination, save/load, pretrained loading, learning, the policy API."""

from __future__ import annotations

import copy
import json
import logging
import subprocess
import sys

import numpy as np
import pytest
import torch

from vla_engine.config.base import ConfigError
from vla_engine.config.model_config import ModelConfig
from vla_engine.models import (CheckpointError, MLPActionHead, ModelInputError, VLAModel, build_byte_tokenizer,
                               create_vla_model)
from vla_engine.models.language import TextTokenCache
from vla_engine.registry import LANGUAGE_MODELS, VISION_ENCODERS

torch.set_num_threads(2)

# A tiny size for every test: 32 px images, 2-layer 32-d LM.
TINY = dict(image_size=32, vision_dim=16, llm_hidden_size=32, llm_num_heads=2, llm_intermediate_size=64,
            head_hidden_dim=32, vision_num_heads=2, vision_patch_size=8, max_text_tokens=16)


def make_batch(b: int = 4, size: int = 32, state_dim: int = 3, action_dim: int = 2, chunk: int = 1, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return {
        "observation.images.front": torch.rand(b, 3, size, size, generator=g),
        "observation.state": torch.randn(b, state_dim, generator=g),
        "task": [f"pick up the block number {i % 3}" for i in range(b)],
        "action": torch.randn(b, chunk, action_dim, generator=g),
        "action_is_pad": torch.zeros(b, chunk, dtype=torch.bool),
    }


def obs_of(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if k not in ("action", "action_is_pad")}


# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("vision", ["cnn", "cnn-keypoints", "resnet18", "siglip"])
@pytest.mark.parametrize("llm", ["qwen2", "llama"])
def test_every_registry_combination_trains(vision, llm):
    assert set(VISION_ENCODERS.names()) >= {"cnn", "resnet18", "siglip"}
    assert set(LANGUAGE_MODELS.names()) >= {"qwen2", "llama"}
    torch.manual_seed(0)
    model = VLAModel(vision_encoder=vision, llm=llm, action_dim=2, state_dim=3, chunk_size=2, **TINY)
    batch = make_batch(chunk=2)
    loss, info = model(batch)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert info["loss"] == pytest.approx(float(loss.detach())) and "action_l1" in info
    loss.backward()
    for part in (model.vision_encoder, model.projector, model.backbone, model.action_head, model.state_proj):
        grads = [p.grad for p in part.parameters() if p.requires_grad and p.grad is not None]
        assert grads and any(float(g.abs().sum()) > 0 for g in grads), f"no gradient reached {type(part).__name__}"
    chunk = model.eval().predict_action_chunk(obs_of(batch))
    assert chunk.shape == (4, 2, 2)


def test_hub_name_call_shape_works_offline(caplog):
    with caplog.at_level(logging.WARNING):
        model = VLAModel(vlm_name_or_path="HuggingFaceTB/SmolVLM-Instruct",
                         action_head=MLPActionHead(hidden_dim=64, action_dim=7, num_layers=3), freeze_vlm=True,
                         image_size=32)
    assert "SmolVLM-Instruct" in caplog.text and "stand-in" in caplog.text
    assert model.config.vision_encoder == "siglip" and model.config.llm == "llama"
    assert model.config.action_dim == 7 and model.config.head.hidden_dim == 64 and model.config.head.num_layers == 3
    assert all(not p.requires_grad for p in model.backbone.parameters())
    assert all(not p.requires_grad for p in model.vision_encoder.parameters())
    assert all(p.requires_grad for p in model.action_head.parameters())
    assert 0 < model.num_parameters(trainable_only=True) < model.num_parameters()
    model.train()
    assert not model.backbone.training and model.action_head.training  # frozen parts stay in eval mode
    loss, _ = model({**make_batch(action_dim=7), "observation.images.front": torch.rand(4, 3, 32, 32)})
    loss.backward()


def test_gradient_checkpointing_and_freeze_vision():
    torch.manual_seed(0)
    plain = create_vla_model("tiny", action_dim=2, state_dim=3, random_shift=0, **TINY)  # no random augmentation
    ckpt = create_vla_model("tiny", action_dim=2, state_dim=3, use_gradient_checkpointing=True, random_shift=0, **TINY)
    ckpt.load_state_dict(plain.state_dict())
    assert ckpt.backbone.lm.is_gradient_checkpointing
    batch = make_batch()
    for m in (plain, ckpt):
        loss, _ = m(batch)
        loss.backward()
    assert torch.allclose(plain.action_query.grad, ckpt.action_query.grad, atol=1e-6)
    frozen = create_vla_model("tiny", action_dim=2, state_dim=3, freeze_vision=True, **TINY)
    assert not any(p.requires_grad for p in frozen.vision_encoder.parameters())
    assert all(p.requires_grad for p in frozen.backbone.parameters())
    frozen.freeze_vlm()
    assert frozen.vlm_frozen and not any(p.requires_grad for p in frozen.backbone.parameters())


def test_save_load_round_trip_identical(tmp_path):
    torch.manual_seed(0)
    model = create_vla_model("tiny", action_dim=2, state_dim=3, chunk_size=4, n_action_steps=2,
                             normalization="min_max", **TINY)
    model.set_normalization({"action": {"min": [-2.0, 0.0], "max": [2.0, 5.0]},
                             "observation.state": {"min": np.zeros(3), "max": np.ones(3) * 3}})
    model.eval()
    obs = obs_of(make_batch())
    before = model.predict_action_chunk(obs)
    out = model.save_pretrained(tmp_path / "ckpt")
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= {p.name for p in out.iterdir()}
    assert json.loads((out / "config.json").read_text())["chunk_size"] == 4
    loaded = VLAModel.from_pretrained(out).eval()
    assert loaded.config == model.config and loaded.has_normalization()
    assert torch.equal(loaded.predict_action_chunk(obs), before)
    # the training loop's strict loader reads the same file
    from vla_engine.train.loop import load_weights

    load_weights(loaded, out / "model.safetensors")
    copy.deepcopy(loaded)  # EMA copies the model


def test_truncated_checkpoint_is_one_line_error(tmp_path):
    model = create_vla_model("tiny", **TINY)
    model.save_pretrained(tmp_path)
    f = tmp_path / "model.safetensors"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as e:
        VLAModel.from_pretrained(tmp_path)
    assert isinstance(e.value, ValueError) and "\n" not in str(e.value) and "model.safetensors" in str(e.value)
    f.unlink()
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        VLAModel.from_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="does not exist"):
        VLAModel.from_pretrained(tmp_path / "nowhere")


def test_pretrained_siglip_folder_loads_offline(tmp_path, monkeypatch):
    from transformers import SiglipVisionConfig, SiglipVisionModel

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.manual_seed(1)
    ref = SiglipVisionModel(SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                               num_attention_heads=2, image_size=48, patch_size=16)).eval()
    ref.save_pretrained(tmp_path / "siglip")
    model = VLAModel(vision_encoder="siglip", vision_pretrained=str(tmp_path / "siglip"), action_dim=2, **TINY)
    enc = model.vision_encoder.eval()
    assert enc.image_size == 48 and enc.out_dim == 32 and enc.num_tokens == 9
    assert model.config.vision.dim == 32
    img = torch.rand(2, 3, 48, 48)
    with torch.no_grad():
        assert torch.allclose(enc(img), ref(pixel_values=(img - 0.5) / 0.5).last_hidden_state, atol=1e-5)
    # the checkpoint carries the structure: it reloads with the pretrained folder gone
    model.eval()
    obs = obs_of(make_batch(state_dim=0))
    before = model.predict_action_chunk(obs)
    model.save_pretrained(tmp_path / "ckpt")
    for f in (tmp_path / "siglip").iterdir():
        f.unlink()
    assert torch.equal(VLAModel.from_pretrained(tmp_path / "ckpt").eval().predict_action_chunk(obs), before)
    with pytest.raises(ConfigError, match="model.vision.pretrained: folder .* does not exist"):
        VLAModel(vision_encoder="siglip", vision={"pretrained": str(tmp_path / "missing")}, **TINY)


def test_pretrained_qwen2_folder_loads_via_llm_pretrained(tmp_path, caplog):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(2)
    lm = Qwen2ForCausalLM(Qwen2Config(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                      num_attention_heads=2, num_key_value_heads=2))
    lm.save_pretrained(tmp_path / "lm")
    build_byte_tokenizer().save_pretrained(tmp_path / "lm")
    model = VLAModel(llm_pretrained=str(tmp_path / "lm"), action_dim=2, **TINY)
    assert model.config.llm_num_layers == 1 and model.backbone.hidden_size == 32
    assert torch.equal(model.backbone.lm.model.embed_tokens.weight, lm.model.embed_tokens.weight)
    # a local folder as vlm_name_or_path means the same
    via_name = VLAModel(vlm_name_or_path=str(tmp_path / "lm"), image_size=32)
    assert via_name.config.llm_pretrained == str(tmp_path / "lm") and via_name.config.llm == "qwen2"
    loss, _ = model(make_batch(state_dim=0))
    loss.backward()
    # no tokenizer in the folder: the byte tokenizer with a warning
    lm.save_pretrained(tmp_path / "bare")
    with caplog.at_level(logging.WARNING):
        VLAModel(llm_pretrained=str(tmp_path / "bare"), **TINY)
    assert "byte-level tokenizer" in caplog.text
    with pytest.raises(ConfigError, match="llm_pretrained"):
        VLAModel(llm_pretrained=str(tmp_path / "nothing-here"), **TINY)


def test_training_lowers_loss_and_uses_the_instruction():
    """Same images, different instructions, different targets: only a model that reads the text fits it."""
    torch.manual_seed(0)
    model = create_vla_model("tiny", action_dim=2, state_dim=0, **TINY)
    g = torch.Generator().manual_seed(0)
    images = torch.rand(8, 3, 32, 32, generator=g).repeat(2, 1, 1, 1)  # (16, 3, 32, 32): each image twice
    tasks = ["move left"] * 8 + ["move right"] * 8
    targets = torch.tensor([[-1.0, 0.5]] * 8 + [[1.0, -0.5]] * 8).unsqueeze(1)  # (16, 1, 2)
    batch = {"observation.images.front": images, "task": tasks, "action": targets}
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(100):
        loss, _ = model(batch)
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < first / 20
    model.eval()
    pred = model.predict_action_chunk({"observation.images.front": images[:1].repeat(2, 1, 1, 1),
                                       "task": ["move left", "move right"]})  # (2, 1, 2)
    assert pred[0, 0, 0] < -0.5 and pred[1, 0, 0] > 0.5


def test_normalization_maps_raw_to_raw():
    torch.manual_seed(0)
    model = create_vla_model("tiny", action_dim=2, state_dim=3, **TINY)
    assert not model.has_normalization()
    model.set_normalization({"action": {"mean": torch.tensor([10.0, -5.0]), "std": torch.tensor([2.0, 0.5])},
                             "observation.state": {"mean": torch.zeros(3), "std": torch.ones(3)}})
    assert model.has_normalization()
    batch = make_batch()
    batch["action"] = torch.tensor([10.0, -5.0]) + torch.tensor([2.0, 0.5]) * batch["action"]  # raw units
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(60):
        loss, _ = model(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    pred = model.eval().predict_action_chunk(obs_of(batch))
    assert torch.allclose(pred, batch["action"], atol=0.5 * 2)  # raw units, not normalised
    with pytest.raises(ValueError, match="3 values but the model expects 2"):
        model.set_normalization({"action": {"mean": [0, 0, 0], "std": [1, 1, 1]},
                                 "observation.state": {"mean": [0] * 3, "std": [1] * 3}})


def test_select_action_queue():
    torch.manual_seed(0)
    model = create_vla_model("tiny", action_dim=2, state_dim=3, chunk_size=4, n_action_steps=2, **TINY).eval()
    obs = obs_of(make_batch(b=2))
    calls = []
    predict = model.predict_action_chunk

    def counting(o):
        calls.append(1)
        return predict(o)

    model.predict_action_chunk = counting
    chunk = predict(obs)  # (2, 4, 2)
    a0, a1, a2 = model.select_action(obs), model.select_action(obs), model.select_action(obs)
    assert a0.shape == (2, 2) and len(calls) == 2
    assert torch.equal(a0, chunk[:, 0]) and torch.equal(a1, chunk[:, 1]) and torch.equal(a2, chunk[:, 0])
    model.reset()
    assert torch.equal(model.select_action(obs), chunk[:, 0]) and len(calls) == 3


def test_prepare_observation_and_history():
    torch.manual_seed(0)
    model = create_vla_model("tiny", action_dim=2, state_dim=2, n_obs_steps=2, **TINY).eval()
    env_obs = {"pixels": np.full((32, 32, 3), 255, dtype=np.uint8), "agent_pos": np.array([0.1, 0.2], np.float32)}
    obs = model.prepare_observation(env_obs, "reach the red block")
    img = obs["observation.images.front"]
    assert img.shape == (1, 3, 32, 32) and img.dtype == torch.float32 and float(img.max()) == 1.0
    assert obs["observation.state"].shape == (1, 2) and obs["task"] == ["reach the red block"]
    assert model.select_action(obs).shape == (1, 2)
    assert len(model._obs_history["observation.state"]) == 2
    # a training batch with history (B, T, ...)
    batch = {"observation.images.front": torch.rand(3, 2, 3, 32, 32), "observation.state": torch.randn(3, 2, 2),
             "task": ["a", "b", "c"], "action": torch.randn(3, 1, 2)}
    loss, _ = model.train()(batch)
    assert torch.isfinite(loss)


def test_two_cameras_and_padding_mask():
    torch.manual_seed(0)
    keys = ["observation.images.front", "observation.images.wrist"]
    model = create_vla_model("tiny", action_dim=2, image_keys=keys, **TINY).eval()
    b = make_batch(state_dim=0)
    b["observation.images.wrist"] = torch.rand(4, 3, 48, 48)  # another size: resized
    out = model.predict_action_chunk(obs_of(b))
    assert out.shape == (4, 1, 2)
    # a sample's prediction does not depend on the padding added for longer instructions in its batch
    one = {k: (v[:1] if isinstance(v, torch.Tensor) else v[:1]) for k, v in obs_of(b).items()}
    longer = {**obs_of(b), "task": [b["task"][0], "a much much longer instruction than the first", "x", "y"]}
    assert torch.allclose(model.predict_action_chunk(one)[0], model.predict_action_chunk(longer)[0], atol=1e-5)
    with pytest.raises(ModelInputError, match="observation.images.wrist"):
        model.predict_action_chunk({"observation.images.front": b["observation.images.front"], "task": b["task"]})


def test_bad_inputs_and_configs_are_one_line_errors():
    with pytest.raises(ConfigError, match=r"model\.vision_encoder: 'vit'.*cnn"):
        ModelConfig(vision_encoder="vit")
    with pytest.raises(ConfigError, match="unknown field 'hidden'"):
        ModelConfig.from_dict({"hidden": 3})
    with pytest.raises(ConfigError, match=r"model\.n_action_steps"):
        ModelConfig(chunk_size=2, n_action_steps=3)
    with pytest.raises(ConfigError, match=r"model\.llm_hidden_size"):
        ModelConfig(llm_hidden_size=100, llm_num_heads=3)
    with pytest.raises(ConfigError, match=r"model\.action_loss"):
        ModelConfig(action_loss="huber")
    with pytest.raises(ConfigError, match="unknown vlm 'nope'.*tiny"):
        create_vla_model("nope")
    with pytest.raises(ConfigError, match=r"model\.action_head: 'warp'"):
        create_vla_model("tiny", action_head="warp")
    model = create_vla_model("tiny", action_dim=2, state_dim=3, **TINY)
    batch = make_batch(action_dim=5)
    with pytest.raises(ModelInputError, match="set model.action_dim: 5") as e:
        model(batch)
    assert "\n" not in str(e.value)
    with pytest.raises(ModelInputError, match="model.state_dim"):
        model({**make_batch(), "observation.state": torch.randn(4, 7)})


def test_tokenizer_saves_loads_and_caches(tmp_path):
    from transformers import AutoTokenizer

    tok = build_byte_tokenizer()
    assert len(tok) == 259 and tok.pad_token_id == 256 and tok.bos_token_id == 257
    ids = tok("héllo wörld", add_special_tokens=False)["input_ids"]
    assert ids == list("héllo wörld".encode()) and tok.decode(ids) == "héllo wörld"
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again("héllo wörld", add_special_tokens=False)["input_ids"] == ids
    cache = TextTokenCache(tok, max_tokens=8)
    ids, mask = cache(["abc", "a much longer one", "abc"])
    assert ids.shape == (3, 8) and mask.sum(1).tolist() == [4, 8, 4] and ids[0, 0] == 257
    assert len(cache._cache) == 2


def test_import_is_light():
    code = ("import sys, vla_engine.models, vla_engine.config.model_config as m; m.ModelConfig(); "
            "print('torch' in sys.modules, 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_random_shift_augments_only_in_training():
    from vla_engine.models.vla import random_shift

    x = torch.rand(8, 3, 16, 16)
    torch.manual_seed(0)
    y = random_shift(x, 2)
    assert y.shape == x.shape and not torch.equal(x, y)
    # every output is an integer shift of its input: some crop of the replicate-padded image equals it
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="replicate")
    for i in range(8):
        assert any(torch.allclose(padded[i, :, dy:dy + 16, dx:dx + 16], y[i], atol=1e-5)
                   for dy in range(5) for dx in range(5))
    model = create_vla_model("tiny", action_dim=2, state_dim=3, random_shift=4, **TINY).eval()
    batch = make_batch()
    obs = {k: v for k, v in batch.items() if k not in ("action", "action_is_pad")}
    torch.testing.assert_close(model.predict_action_chunk(obs), model.predict_action_chunk(obs))


@pytest.mark.parametrize("vision", ["cnn", "cnn-keypoints"])
def test_film_conditioning_uses_the_instruction(vision):
    torch.manual_seed(0)
    model = create_vla_model("tiny", action_dim=2, state_dim=3, film=True, random_shift=0, vision_encoder=vision,
                             **TINY)
    assert model.film is not None
    with torch.no_grad():
        model.film.weight.normal_(0, 0.5)  # as if trained: the words now scale the visual features
    batch = make_batch()
    obs = {k: v for k, v in batch.items() if k not in ("action", "action_is_pad")}
    model.eval()
    a = model.predict_action_chunk({**obs, "task": ["touch the red block"] * len(obs["task"])})
    b = model.predict_action_chunk({**obs, "task": ["touch the blue block"] * len(obs["task"])})
    assert not torch.allclose(a, b)
    model.train()
    loss, _ = model(batch)
    loss.backward()
    assert model.film.weight.grad is not None and model.film.weight.grad.abs().sum() > 0
    # a frozen encoder still passes gradients to the FiLM generator (LoRA / freeze_vision fine-tuning)
    model.zero_grad()
    model.freeze_vision(True)
    model(batch)[0].backward()
    assert all(p.grad is None for p in model.vision_encoder.parameters())
    assert model.film.weight.grad is not None and model.film.weight.grad.abs().sum() > 0


def test_film_reads_each_distinct_instruction_once_and_gives_every_sample_its_own():
    """A multi-task batch repeats a few instructions: the LM pass over the words runs once per distinct one,
    and each sample's features are what it gets alone."""
    torch.manual_seed(0)
    model = create_vla_model("tiny", action_dim=2, state_dim=3, film=True, random_shift=0, **TINY)
    with torch.no_grad():
        model.film.weight.normal_(0, 0.5)
    model.eval()
    batch = obs_of(make_batch(b=6))  # instructions 0, 1, 2, 0, 1, 2 (two lengths' worth of padding: none here)
    batch["task"] = ["pick up the block number 0", "touch red", "pick up the block number 0", "touch red",
                     "push the big blue block to the left", "touch red"]  # padded to the longest
    seen = []
    hook = model.backbone.register_forward_hook(lambda mod, args, kw, out: seen.append(kw["inputs_embeds"].shape[0]),
                                                with_kwargs=True)
    with torch.no_grad():
        together = model.features(batch)  # (6, H)
    hook.remove()
    assert seen[0] == 3  # the FiLM pass: the three distinct instructions, not six
    for i in range(6):
        one = {k: (v[i:i + 1] if isinstance(v, torch.Tensor) else [v[i]]) for k, v in batch.items()}
        with torch.no_grad():
            alone = model.features(one)
        torch.testing.assert_close(together[i:i + 1], alone, rtol=1e-4, atol=1e-5)
