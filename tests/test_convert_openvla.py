"""OpenVLA checkpoints in their published on-disk format (``openvla/openvla-7b``: config.json of model_type
openvla, timm DINOv2-reg + SigLIP towers, fused-gelu-mlp projector, Llama, safetensors, tokenizer files) load
as an ``OpenVLAWrapper`` that acts like OpenVLA. A tiny checkpoint is written here from real timm towers and a
real transformers Llama, and every stage is checked against them (features, projector, logits, actions)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

timm = pytest.importorskip("timm")
transformers = pytest.importorskip("transformers")
from safetensors.torch import save_file  # noqa: E402

from vla_engine.errors import CheckpointError  # noqa: E402
from vla_engine.models import VLAModel  # noqa: E402
from vla_engine.models.fused_vision import DinoSiglipEncoder  # noqa: E402
from vla_engine.models.projector import FusedGeluMLPProjector  # noqa: E402
from vla_engine.models.vision import Dinov2RegEncoder  # noqa: E402
from vla_engine.models.wrappers import OpenVLAWrapper  # noqa: E402

SIZE, BASE_VOCAB, PAD_TO = 28, 384, 64  # 2x2 patches of 14 px; the tokenizer's vocabulary; OpenVLA's padding
TEXT_VOCAB = BASE_VOCAB + PAD_TO  # <PAD> is id 384, the embeddings padded to a multiple of 64 (as 32000 -> 32064)
DINO_ID, SIGLIP_ID = "vit_large_patch14_reg4_dinov2.lvd142m", "vit_so400m_patch14_siglip_224"  # 16 heads each
IMAGENET_MEAN, IMAGENET_STD = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
TASKS = ["Pick up the red block", "open the drawer now please"]


def _stats(name: str) -> dict:
    g = np.random.default_rng(sum(map(ord, name)))  # each dataset its own statistics
    lo = g.uniform(-1.0, -0.1, 7)
    hi = lo + g.uniform(0.2, 2.0, 7)
    return {"action": {"mean": ((lo + hi) / 2).tolist(), "std": ((hi - lo) / 4).tolist(), "min": (lo - 0.1).tolist(),
                       "max": (hi + 0.1).tolist(), "q01": lo.tolist(), "q99": hi.tolist(),
                       "mask": [True] * 6 + [False]},
            "proprio": {"mean": [0.0] * 7, "std": [1.0] * 7, "q01": [0.0] * 7, "q99": [1.0] * 7}}


def _tokenizer():
    """A Llama-style tokenizer (SentencePiece word starts, <s> first, an added <PAD>) with 384 ids."""
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "\u2581": 3}
    for ch in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789?:.,!'\n-":
        vocab[ch] = len(vocab)
    while len(vocab) < BASE_VOCAB:  # the rare pieces at the end of the vocabulary, which OpenVLA overwrites
        vocab[f"<piece{len(vocab)}>"] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=False)
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="first", split=False)
    fast = transformers.LlamaTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                           add_bos_token=True, add_eos_token=False)
    fast.add_special_tokens({"pad_token": "<PAD>"})
    return fast


def _jiggle(module: torch.nn.Module, scale: float = 0.1) -> None:
    """Random weights everywhere (timm's LayerScale starts at 1e-5, which would hide the blocks)."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.add_(torch.randn_like(p) * (0.5 if name.endswith("gamma") else scale))


def _parts(seed: int = 0) -> dict:
    torch.manual_seed(seed)
    dino = timm.create_model("vit_small_patch14_reg4_dinov2", pretrained=False, img_size=SIZE, embed_dim=64, depth=3,
                             num_heads=16).eval()
    siglip = timm.create_model("vit_so400m_patch14_siglip_224", pretrained=False, img_size=SIZE, embed_dim=48, depth=3,
                               num_heads=16).eval()
    _jiggle(dino)
    _jiggle(siglip)
    dv, h = 64 + 48, 64
    projector = {"fc1.weight": torch.randn(4 * dv, dv) * 0.1, "fc1.bias": torch.randn(4 * dv) * 0.1,
                 "fc2.weight": torch.randn(h, 4 * dv) * 0.05, "fc2.bias": torch.randn(h) * 0.1,
                 "fc3.weight": torch.randn(h, h) * 0.1, "fc3.bias": torch.randn(h) * 0.1}
    text = transformers.LlamaConfig(vocab_size=TEXT_VOCAB, hidden_size=h, intermediate_size=128, num_hidden_layers=2,
                                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                                    rms_norm_eps=1e-5, rope_theta=10000.0, pad_token_id=BASE_VOCAB, bos_token_id=1,
                                    eos_token_id=2, tie_word_embeddings=False)
    llama = transformers.LlamaForCausalLM(text).eval()
    with torch.no_grad():  # a trained OpenVLA puts its mass on the action tokens: make the tail likely
        llama.lm_head.weight[BASE_VOCAB - 256:BASE_VOCAB] *= 6.0
    return {"dino": dino, "siglip": siglip, "projector": projector, "llama": llama, "text": text}


def _state_dict(parts: dict) -> dict[str, torch.Tensor]:
    sd = {}
    for k, v in parts["dino"].state_dict().items():  # OpenVLA renames LayerScale's gamma to scale_factor
        sd["vision_backbone.featurizer." + k.replace(".gamma", ".scale_factor")] = v
    for k, v in parts["siglip"].state_dict().items():
        sd["vision_backbone.fused_featurizer." + k] = v
    sd.update({"projector." + k: v for k, v in parts["projector"].items()})
    sd.update({"language_model." + k: v for k, v in parts["llama"].state_dict().items()})
    return {k: v.contiguous().clone() for k, v in sd.items()}


def write_openvla(folder, parts: dict, *, shards: int = 1, datasets=("bridge_orig", "fractal")) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "architectures": ["OpenVLAForActionPrediction"], "model_type": "openvla",
        "auto_map": {"AutoConfig": "configuration_prismatic.OpenVLAConfig",
                     "AutoModelForVision2Seq": "modeling_prismatic.OpenVLAForActionPrediction"},
        "vision_backbone_id": "dinosiglip-vit-so-224px", "llm_backbone_id": "llama2-7b-pure",
        "arch_specifier": "no-align+fused-gelu-mlp", "use_fused_vision_backbone": True,
        "image_resize_strategy": "resize-naive", "timm_model_ids": [DINO_ID, SIGLIP_ID],
        "timm_override_act_layers": [None, None], "image_sizes": [SIZE, SIZE],
        "text_config": dict(parts["text"].to_dict(), torch_dtype="bfloat16"), "n_action_bins": 256,
        "pad_token_id": BASE_VOCAB, "pad_to_multiple_of": PAD_TO, "llm_max_length": 2048, "output_projector_states": False,
        "torch_dtype": "bfloat16", "transformers_version": "4.40.1",
        "norm_stats": {name: _stats(name) for name in datasets},
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    _tokenizer().save_pretrained(str(folder))
    sd = _state_dict(parts)
    if shards == 1:
        save_file(sd, str(folder / "model.safetensors"), metadata={"format": "pt"})
        return
    keys = sorted(sd)
    weight_map = {}
    for i in range(shards):
        name = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {k: sd[k] for k in keys[i::shards]}
        save_file(part, str(folder / name), metadata={"format": "pt"})
        weight_map.update({k: name for k in part})
    total = sum(v.numel() * v.element_size() for v in sd.values())
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))


@pytest.fixture(scope="module")
def openvla(tmp_path_factory):
    """(the tiny OpenVLA's parts, its folder, the wrapper loaded from it for 'fractal')."""
    parts = _parts()
    folder = tmp_path_factory.mktemp("openvla") / "openvla-tiny"
    write_openvla(folder, parts)
    model = OpenVLAWrapper.from_openvla(str(folder), unnorm_key="fractal")
    return parts, folder, model


def _images(b: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.rand(b, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def _timm_features(parts: dict, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """OpenVLA's featurizers: timm get_intermediate_layers(n={depth - 2}) on each tower's normalised input."""
    dino, siglip = parts["dino"], parts["siglip"]
    xd = (x - IMAGENET_MEAN.view(1, 3, 1, 1)) / IMAGENET_STD.view(1, 3, 1, 1)
    xs = (x - 0.5) / 0.5
    with torch.no_grad():
        d = dino.get_intermediate_layers(xd, n={len(dino.blocks) - 2})[0]  # (B, P, 64)
        s = siglip.get_intermediate_layers(xs, n={len(siglip.blocks) - 2})[0]  # (B, P, 48)
    return d, s


def _reference_actions(parts: dict, x: torch.Tensor, task: str, stats: dict) -> tuple[list[int], np.ndarray]:
    """OpenVLA's predict_action, step by step, from timm + the tiny Llama + numpy (one image)."""
    tok = _tokenizer()
    llama, p = parts["llama"], parts["projector"]
    d, s = _timm_features(parts, x)
    f = torch.cat([d, s], dim=-1)  # (1, P, 112)
    gelu = torch.nn.functional.gelu
    lin = torch.nn.functional.linear
    with torch.no_grad():
        proj = lin(gelu(lin(gelu(lin(f, p["fc1.weight"], p["fc1.bias"])), p["fc2.weight"], p["fc2.bias"])),
                   p["fc3.weight"], p["fc3.bias"])  # (1, P, H)
        ids = tok(f"In: What action should the robot take to {task.lower()}?\nOut:")["input_ids"]
        assert ids[0] == 1  # <s>
        ids = torch.tensor([ids + ([3] if ids[-1] != 3 else [])])  # + the empty token (29871 in Llama 2)
        emb = llama.get_input_embeddings()
        seq = torch.cat([emb(ids[:, :1]), proj, emb(ids[:, 1:])], dim=1)
        tokens = []
        for _ in range(7):  # HF generate, greedy, over the whole vocabulary
            t = int(llama(inputs_embeds=seq).logits[0, -1].argmax())
            tokens.append(t)
            seq = torch.cat([seq, emb(torch.tensor([[t]]))], dim=1)
    vocab = TEXT_VOCAB - PAD_TO  # OpenVLA: text_config.vocab_size - pad_to_multiple_of
    bins = np.linspace(-1, 1, 256)
    centers = (bins[:-1] + bins[1:]) / 2.0
    disc = np.clip(vocab - np.array(tokens) - 1, 0, centers.shape[0] - 1)
    a = centers[disc]
    st = stats["action"]
    mask, hi, lo = np.array(st["mask"]), np.array(st["q99"]), np.array(st["q01"])
    return tokens, np.where(mask, 0.5 * (a + 1) * (hi - lo) + lo, a)


# ------------------------------------------------------------------------------------------------
def test_converted_structure_matches_openvla(openvla):
    parts, folder, model = openvla
    cfg = model.config
    assert isinstance(model, OpenVLAWrapper)
    assert isinstance(model.vision_encoder, DinoSiglipEncoder) and isinstance(model.vision_encoder.dino, Dinov2RegEncoder)
    assert isinstance(model.projector, FusedGeluMLPProjector)
    assert (cfg.vision.feature_layer, cfg.prompt_format, cfg.head.token_ids) == (-2, "openvla", "vocab_tail")
    assert (cfg.action_dim, cfg.head.bins, cfg.normalization, cfg.state_dim) == (7, 256, "min_max", 0)
    assert model.backbone.lm.get_input_embeddings().weight.shape[0] == TEXT_VOCAB  # not grown: the tail is reused
    assert model.action_head.token_offset == BASE_VOCAB and model.openvla_unnorm_key == "fractal"
    assert model.vision_encoder.dino.hf_config.num_register_tokens == 4


def test_vision_features_match_timm_second_to_last_block(openvla):
    parts, _, model = openvla
    x = _images(3)
    d, s = _timm_features(parts, x)
    enc = model.vision_encoder
    with torch.no_grad():
        ours_d, ours_s, fused = enc.dino(x), enc.siglip(x), enc(x)
    assert ours_d.shape == d.shape == (3, 4, 64) and ours_s.shape == s.shape == (3, 4, 48)
    assert torch.allclose(ours_d, d, atol=1e-5), (ours_d - d).abs().max()
    assert torch.allclose(ours_s, s, atol=1e-5), (ours_s - s).abs().max()
    assert torch.allclose(fused, torch.cat([d, s], dim=-1), atol=1e-5)


def test_projector_and_lm_logits_match_the_reference(openvla):
    parts, _, model = openvla
    p, llama = parts["projector"], parts["llama"]
    f = torch.randn(2, 4, 112)
    gelu, lin = torch.nn.functional.gelu, torch.nn.functional.linear
    with torch.no_grad():
        ref = lin(gelu(lin(gelu(lin(f, p["fc1.weight"], p["fc1.bias"])), p["fc2.weight"], p["fc2.bias"])),
                  p["fc3.weight"], p["fc3.bias"])
        assert torch.allclose(model.projector(f), ref, atol=1e-6)
        ids = torch.randint(0, TEXT_VOCAB, (2, 9))
        assert torch.allclose(model.backbone.lm(input_ids=ids).logits, llama(input_ids=ids).logits, atol=1e-5)
        hidden = model.backbone(model.backbone.embed(ids))
        assert torch.allclose(model.action_head._logits(model.backbone, hidden), llama(input_ids=ids).logits, atol=1e-5)


def test_predicted_actions_are_openvlas(openvla):
    """A batch of two instructions of different lengths (left-padded prompts) gives, per sample, the tokens of
    OpenVLA's greedy decoding and its binning + q01/q99 un-normalisation (the gripper left as decoded)."""
    parts, folder, model = openvla
    stats = json.loads((folder / "config.json").read_text())["norm_stats"]["fractal"]
    x = _images(2, seed=5)
    obs = {"observation.images.front": x, "task": TASKS}
    chunk = model.predict_action_chunk(obs)  # (B, 1, 7)
    assert chunk.shape == (2, 1, 7)
    for i, task in enumerate(TASKS):
        tokens, expected = _reference_actions(parts, x[i:i + 1], task, stats)
        assert model.action_head.last_tokens[i].tolist() == tokens
        assert any(BASE_VOCAB - 256 <= t < BASE_VOCAB for t in tokens)  # action tokens from the vocabulary's tail
        assert np.allclose(chunk[i, 0].numpy(), expected, atol=1e-5), (chunk[i, 0], expected)
    model.reset()
    assert torch.allclose(model.select_action(obs), chunk[:, 0])
    one = model.predict_action_chunk({"observation.images.front": x[1:], "task": [TASKS[1]]})
    assert torch.allclose(one, chunk[1:], atol=1e-5)  # the padded batch row equals the unpadded run


def test_fine_tuning_loss_is_next_token_cross_entropy_over_the_vocabulary(openvla):
    parts, folder, model = openvla
    obs = {"observation.images.front": _images(2, seed=7), "task": TASKS}
    target = model.predict_action_chunk(obs)  # the model's own greedy actions: teacher forcing reproduces them
    loss, info = model(dict(obs, action=target))
    assert torch.isfinite(loss) and info["action_token_accuracy"] == 1.0
    loss.backward()
    assert model.projector.fc1.weight.grad is not None and model.action_head.logit_delta.grad is not None
    model.zero_grad(set_to_none=True)


def test_save_pretrained_round_trip_and_sharded_folder(openvla, tmp_path):
    parts, folder, model = openvla
    obs = {"observation.images.front": _images(2, seed=9), "task": TASKS}
    before = model.predict_action_chunk(obs)
    model.save_pretrained(tmp_path / "ckpt")
    again = OpenVLAWrapper.from_pretrained(tmp_path / "ckpt")
    assert type(again) is OpenVLAWrapper and again.config == model.config
    assert isinstance(again.vision_encoder.dino, Dinov2RegEncoder)
    assert torch.equal(again.predict_action_chunk(obs), before)
    # the same weights in two shards with an index, one dataset (no unnorm_key needed), via VLAModel.from_pretrained
    write_openvla(tmp_path / "sharded", parts, shards=2, datasets=("fractal",))
    assert len(list((tmp_path / "sharded").glob("model-0000*-of-00002.safetensors"))) == 2
    sharded = VLAModel.from_pretrained(tmp_path / "sharded")
    assert type(sharded) is OpenVLAWrapper and sharded.openvla_unnorm_key == "fractal"
    assert torch.equal(sharded.predict_action_chunk(obs), before)


def test_clear_errors_for_broken_folders(openvla, tmp_path):
    parts, folder, _ = openvla
    with pytest.raises(CheckpointError, match="pass unnorm_key= one of: bridge_orig, fractal"):
        OpenVLAWrapper.from_openvla(str(folder))
    with pytest.raises(CheckpointError, match="unnorm_key 'libero' is not in .*choose one of: bridge_orig, fractal"):
        OpenVLAWrapper.from_openvla(str(folder), unnorm_key="libero")
    with pytest.raises(CheckpointError, match="does not exist"):
        OpenVLAWrapper.from_openvla(str(tmp_path / "nowhere"))

    def broken(name: str):
        d = tmp_path / name
        shutil.copytree(folder, d)
        return d

    d = broken("no-config")
    (d / "config.json").unlink()
    with pytest.raises(CheckpointError, match="has no config.json"):
        OpenVLAWrapper.from_openvla(str(d))
    d = broken("llama-config")
    (d / "config.json").write_text(json.dumps(parts["text"].to_dict()))
    with pytest.raises(CheckpointError, match="is not an OpenVLA config .*'llama'"):
        OpenVLAWrapper.from_openvla(str(d))
    d = broken("bad-json")
    (d / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        OpenVLAWrapper.from_openvla(str(d))
    d = broken("no-weights")
    (d / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="has no model.safetensors or model.safetensors.index.json"):
        OpenVLAWrapper.from_openvla(str(d), unnorm_key="fractal")
    d = broken("corrupt")
    (d / "model.safetensors").write_bytes(b"\x00garbage" * 8)
    with pytest.raises(CheckpointError, match="is corrupt .*re-download it"):
        OpenVLAWrapper.from_openvla(str(d), unnorm_key="fractal")
    d = broken("lost-shard")
    (d / "model.safetensors").unlink()
    (d / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"projector.fc1.weight": "model-00001-of-00002.safetensors"}}))
    with pytest.raises(CheckpointError, match="lacks the weight shard model-00001-of-00002.safetensors"):
        OpenVLAWrapper.from_openvla(str(d), unnorm_key="fractal")
    d = broken("no-tokenizer")
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (d / f).unlink(missing_ok=True)
    with pytest.raises(CheckpointError, match="no readable tokenizer"):
        OpenVLAWrapper.from_openvla(str(d), unnorm_key="fractal")
    d = broken("wrong-size")
    cfg = json.loads((d / "config.json").read_text())
    cfg["image_sizes"] = [56, 56]
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="pos_embed has 4 positions but 56 px images"):
        OpenVLAWrapper.from_openvla(str(d), unnorm_key="fractal")


def test_new_model_options_validate_and_work_from_scratch(tmp_path):
    from vla_engine.config.base import ConfigError
    from vla_engine.config.model_config import ModelConfig

    with pytest.raises(ConfigError, match="model.vision: 'feature_layer' is not a setting of the cnn encoder"):
        ModelConfig(vision_encoder="cnn", vision={"feature_layer": -2})
    with pytest.raises(ConfigError, match="model.vision.feature_layer: 1 is out of range"):
        ModelConfig(vision_encoder="siglip", vision={"feature_layer": 1})
    with pytest.raises(ConfigError, match="model.head.token_ids: 'end' is not allowed"):
        ModelConfig.from_dict({"action_head": "tokens", "head": {"token_ids": "end"}})
    with pytest.raises(ConfigError, match="model.prompt_format"):
        ModelConfig.from_dict({"prompt_format": "llava"})
    small_vision = dict(patch_size=14, dim=32, num_layers=2, num_heads=2)
    small = dict(image_size=28,
                 llm="llama", llm_hidden_size=32, llm_num_heads=2, llm_intermediate_size=64, llm_num_layers=1,
                 action_dim=2, random_shift=0, normalization="min_max")
    with pytest.raises(ConfigError, match="vision.feature_layer: -3 is out of range for a 2-layer dinov2-reg"):
        VLAModel(vision_encoder="dinov2-reg", vision=dict(small_vision, feature_layer=-3), **small)
    torch.manual_seed(0)
    # DINOv2 with registers from scratch, the last block's output (before the final norm); OpenVLA's prompt and
    # vocab-tail tokens on the byte-level tokenizer
    model = VLAModel(vision_encoder="dinov2-reg", vision=dict(small_vision, feature_layer=-1), projector="fused-gelu-mlp",
                     prompt_format="openvla", action_head="tokens", head={"token_ids": "vocab_tail"}, **small).eval()
    enc = model.vision_encoder
    x = _images(2)
    with torch.no_grad():
        hidden = enc.model(pixel_values=enc.preprocess(x), output_hidden_states=True).hidden_states[-1]
        ref = torch.cat([hidden[:, :1], hidden[:, 1 + 4:]], dim=1)  # CLS kept (the dinov2 default), registers dropped
        assert torch.allclose(enc(x), ref) and enc(x).shape == (2, 5, 32)
    assert model.action_head.token_offset == model.tokenizer.vocab_size  # no ids appended
    obs = {"observation.images.front": x, "task": ["push", "push the block left"]}
    model.set_normalization({"action": {"min": [-1, -1], "max": [1, 1]}})
    pred = model.predict_action_chunk(obs)
    assert pred.shape == (2, 1, 2) and bool((pred.abs() <= 1).all())
    model.save_pretrained(tmp_path / "ckpt")
    assert torch.equal(VLAModel.from_pretrained(tmp_path / "ckpt").predict_action_chunk(obs), pred)
