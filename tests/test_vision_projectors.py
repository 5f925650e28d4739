"""Vision encoders (SigLIP, CLIP, DINOv2 from transformers; ResNet-18/34/50 from torchvision) and projectors
(MLP, attention pooling, Perceiver resampler): loading from folders offline, per-family preprocessing,
every encoder x projector in a VLAModel (train step, save/load), weight files, errors, freezing."""

from __future__ import annotations

import shutil

import pytest
import torch

from vla_engine.config.base import ConfigError
from vla_engine.models import VisionEncoder, VisionProjector, VLAModel
from vla_engine.models.projector import AttentionProjector, MLPProjector, PerceiverResampler
from vla_engine.models.vision import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD, HFVisionEncoder

transformers = pytest.importorskip("transformers")
torch.set_num_threads(2)

# tiny sizes everywhere: 32 px images, one 32-d transformer layer, a 1-layer 32-d LM
TINY = dict(image_size=32, vision_dim=16, vision_num_layers=1, vision_num_heads=2, vision_patch_size=8,
            llm_hidden_size=32, llm_num_layers=1, llm_num_heads=2, llm_intermediate_size=64, head_hidden_dim=32,
            max_text_tokens=16, projector_num_tokens=4, projector_num_layers=2, projector_num_heads=4)
VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=32,
              patch_size=8)
TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, vocab_size=64)
CUSTOM_MEAN, CUSTOM_STD = (0.4, 0.45, 0.5), (0.2, 0.25, 0.3)

# folder -> (family, mean, std, image size, tokens) that our encoder must read from it
FOLDERS = {
    "siglip": ("siglip", CUSTOM_MEAN, CUSTOM_STD, 32, 16),  # its preprocessor has a non-default mean/std
    "siglip_full": ("siglip", (0.5,) * 3, (0.5,) * 3, 32, 16),  # SiglipModel: text + vision towers
    "clip": ("clip", CLIP_MEAN, CLIP_STD, 32, 16),  # CLS dropped
    "clip_full": ("clip", CLIP_MEAN, CLIP_STD, 32, 16),  # CLIPModel
    "dinov2": ("dinov2", IMAGENET_MEAN, IMAGENET_STD, 32, 17),  # CLS kept; the preprocessor's 32 px, not the config's 48
}


def make_batch(b: int = 2, size: int = 32, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"observation.images.front": torch.rand(b, 3, size, size, generator=g),
            "observation.state": torch.randn(b, 3, generator=g), "task": ["pick the red block", "push left"][:b],
            "action": torch.randn(b, 1, 2, generator=g)}


def obs_of(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if k != "action"}


@pytest.fixture(scope="module")
def hf(tmp_path_factory):
    """Tiny transformers models saved with save_pretrained, each with its image processor: (root, models)."""
    tf = transformers
    root = tmp_path_factory.mktemp("hf")
    torch.manual_seed(0)
    square = dict(size={"height": 32, "width": 32})
    crop = dict(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    parts = {
        "siglip": (tf.SiglipVisionModel(tf.SiglipVisionConfig(**VISION)),
                   tf.SiglipImageProcessor(**square, image_mean=list(CUSTOM_MEAN), image_std=list(CUSTOM_STD))),
        "siglip_full": (tf.SiglipModel(tf.SiglipConfig(vision_config=VISION, text_config=TEXT)),
                        tf.SiglipImageProcessor(**square)),
        "clip": (tf.CLIPVisionModel(tf.CLIPVisionConfig(**VISION)), tf.CLIPImageProcessor(**crop)),
        "clip_full": (tf.CLIPModel(tf.CLIPConfig(vision_config=VISION, text_config=TEXT)), tf.CLIPImageProcessor(**crop)),
        "dinov2": (tf.Dinov2Model(tf.Dinov2Config(hidden_size=32, mlp_ratio=2, num_hidden_layers=1, num_attention_heads=2,
                                                  image_size=48, patch_size=8)),
                   tf.BitImageProcessor(size={"shortest_edge": 36}, crop_size={"height": 32, "width": 32},
                                        image_mean=list(IMAGENET_MEAN), image_std=list(IMAGENET_STD))),
    }
    models, processors = {}, {}
    for name, (model, proc) in parts.items():
        model.eval().save_pretrained(root / name)
        proc.save_pretrained(root / name)
        models[name], processors[name] = model, proc
    return root, models, processors


def reference_tokens(model, name: str, pixel_values: torch.Tensor) -> torch.Tensor:
    vision = model.vision_model if name.endswith("_full") else model  # two-tower models: their vision tower
    return vision(pixel_values=pixel_values).last_hidden_state  # (B, [1 +] P, D)


def one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg and "Traceback" not in msg, msg
    return msg


# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(FOLDERS))
def test_folder_loads_offline_matches_transformers_and_round_trips(hf, name, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    root, models, processors = hf
    family, mean, std, size, n_tokens = FOLDERS[name]
    folder = tmp_path / name
    shutil.copytree(root / name, folder)

    enc = VisionEncoder.create(family, pretrained=str(folder)).eval()
    assert type(enc).__name__ == {"siglip": "SiglipEncoder", "clip": "ClipEncoder", "dinov2": "Dinov2Encoder"}[family]
    assert enc.image_size == size and enc.out_dim == 32 and enc.num_tokens == n_tokens
    assert torch.allclose(enc.mean.flatten(), torch.tensor(mean)) and torch.allclose(enc.std.flatten(), torch.tensor(std))

    # our torch preprocessing = the saved image processor's (images already at the model's size)
    img = torch.randint(0, 256, (2, size, size, 3), dtype=torch.uint8)
    expected_pix = processors[name](images=list(img.numpy()), do_resize=False, return_tensors="pt").pixel_values
    x = img.permute(0, 3, 1, 2).float() / 255.0  # (B, 3, S, S) in [0, 1]
    pix = enc.preprocess(x)
    assert torch.allclose(pix, expected_pix, atol=1e-5)

    # the same tokens as the transformers model itself on that input
    with torch.no_grad():
        ref = reference_tokens(models[name], name, pix)  # (B, 1 + P, D) or (B, P, D)
        ref = ref[:, 1:] if family == "clip" else ref  # CLIP: patch tokens only
        out = enc(x)
    assert out.shape == (2, n_tokens, 32) and torch.allclose(out, ref, atol=1e-5)
    # larger inputs are resized to the encoder's size first
    assert enc(torch.rand(1, 3, 50, 40)).shape == (1, n_tokens, 32)

    # in a VLA; the checkpoint rebuilds the same encoder (size, normalisation) with the folder gone
    torch.manual_seed(0)
    model = VLAModel(vision_encoder=family, vision_pretrained=str(folder), projector="attention", action_dim=2,
                     state_dim=3, **TINY).eval()
    assert model.config.vision.dim == 32
    obs = obs_of(make_batch())
    before = model.predict_action_chunk(obs)
    model.save_pretrained(tmp_path / "ckpt")
    shutil.rmtree(folder)
    loaded = VLAModel.from_pretrained(tmp_path / "ckpt")
    le = loaded.vision_encoder
    assert (le.image_size, le.num_tokens, le.keep_cls) == (enc.image_size, enc.num_tokens, enc.keep_cls)
    assert torch.equal(le.mean, enc.mean) and torch.equal(le.std, enc.std)
    assert torch.equal(loaded.predict_action_chunk(obs), before)


def test_each_family_has_its_own_default_normalisation(hf, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    img = torch.rand(2, 3, 32, 32)
    defaults = {"siglip": ((0.5,) * 3, (0.5,) * 3), "clip": (CLIP_MEAN, CLIP_STD), "dinov2": (IMAGENET_MEAN, IMAGENET_STD),
                "resnet18": (IMAGENET_MEAN, IMAGENET_STD)}
    for family, (mean, std) in defaults.items():
        enc = VisionEncoder.create(family, image_size=32, dim=16, num_layers=1, num_heads=2, patch_size=8)
        m, s = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
        assert torch.allclose(enc.preprocess(img), (img - m) / s), family
    # a folder without preprocessor_config.json: the family defaults
    folder = tmp_path / "clip"
    shutil.copytree(hf[0] / "clip", folder)
    (folder / "preprocessor_config.json").unlink()
    enc = VisionEncoder.create("clip", pretrained=str(folder))
    assert torch.allclose(enc.mean.flatten(), torch.tensor(CLIP_MEAN)) and enc.image_size == 32
    # the family is read from the folder when only the folder is given
    assert type(VisionEncoder.create(str(hf[0] / "dinov2"))).__name__ == "Dinov2Encoder"
    assert type(VisionEncoder.create(str(hf[0] / "siglip_full"))).__name__ == "SiglipEncoder"


def test_cls_token_selection(hf, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    root, models, _ = hf
    x = torch.rand(2, 3, 32, 32)
    clip = VisionEncoder.create("clip", pretrained=str(root / "clip"), keep_cls=True).eval()
    dino = VisionEncoder.create("dinov2", pretrained=str(root / "dinov2"), keep_cls=False).eval()
    assert clip.num_tokens == 17 and dino.num_tokens == 16
    with torch.no_grad():
        assert torch.allclose(clip(x), models["clip"](pixel_values=clip.preprocess(x)).last_hidden_state, atol=1e-5)
        assert torch.allclose(dino(x), models["dinov2"](pixel_values=dino.preprocess(x)).last_hidden_state[:, 1:],
                              atol=1e-5)
    with pytest.raises(ConfigError, match="no CLS token"):
        VisionEncoder.create("siglip", keep_cls=True, **{k: TINY[k] for k in ("image_size", "vision_patch_size")})
    with pytest.raises(ConfigError, match="keep_cls"):
        VisionEncoder.create("resnet18", keep_cls=True)


# every encoder x every projector; the two big ResNets (their checkpoints are 85-95 MB to write and read back)
# with one projector each, their depth-specific loading checked in test_resnet_weight_files_load
COMBOS = [(v, p) for v in ("cnn", "resnet18", "siglip", "clip", "dinov2") for p in ("mlp", "attention", "perceiver")]
COMBOS += [("resnet34", "perceiver"), ("resnet50", "attention")]


@pytest.mark.parametrize("vision,projector", COMBOS)
def test_every_encoder_with_every_projector_trains_and_round_trips(vision, projector, tmp_path):
    torch.manual_seed(0)
    model = VLAModel(vision_encoder=vision, projector=projector, action_dim=2, state_dim=3, **TINY)
    enc, proj = model.vision_encoder, model.projector
    assert isinstance(enc, VisionEncoder) and isinstance(proj, VisionProjector)
    assert proj.out_dim == 32 and proj.in_dim == enc.out_dim
    assert enc.out_dim == {"resnet18": 512, "resnet34": 512, "resnet50": 2048}.get(vision, 16)
    batch = make_batch()
    n_img = proj.output_tokens(enc.num_tokens)
    assert n_img == (enc.num_tokens if projector == "mlp" else 4)
    assert model.encode_modalities(obs_of(batch))["images"].shape == (2, n_img, 32)
    loss, _ = model(batch)
    loss.backward()
    assert all(p.grad is not None for p in proj.parameters()), "a projector weight got no gradient"
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in enc.parameters())
    model.eval()
    obs = obs_of(batch)
    before = model.predict_action_chunk(obs)
    model.save_pretrained(tmp_path)
    loaded = VLAModel.from_pretrained(tmp_path)
    assert type(loaded.vision_encoder) is type(enc) and type(loaded.projector) is type(proj)
    assert torch.equal(loaded.predict_action_chunk(obs), before)


@pytest.mark.parametrize("vision", ["siglip", "clip", "dinov2", "resnet18"])
def test_freeze_vision_leaves_encoder_without_gradients(vision):
    torch.manual_seed(0)
    model = VLAModel(vision_encoder=vision, projector="perceiver", freeze_vision=True, action_dim=2, state_dim=3, **TINY)
    loss, _ = model(make_batch())
    loss.backward()
    assert all(p.grad is None for p in model.vision_encoder.parameters())
    assert all(p.grad is not None for p in model.projector.parameters())
    assert not model.vision_encoder.training  # frozen: eval behaviour while the rest trains


def test_resnet_weight_files_load(tmp_path):
    import torchvision
    from safetensors.torch import save_file

    torch.manual_seed(0)
    x = torch.rand(2, 3, 64, 64)
    cases = [("resnet18", tmp_path / "r18.pth", "pth"), ("resnet50", tmp_path / "r50.safetensors", "safetensors"),
             ("resnet18", tmp_path / "r18-train.pt", "wrapped")]
    for arch, path, kind in cases:
        ref = getattr(torchvision.models, arch)(weights=None).eval()
        state = ref.state_dict()
        if kind == "safetensors":
            save_file({k: v.contiguous() for k, v in state.items()}, str(path))
        elif kind == "wrapped":  # a training checkpoint: weights under "state_dict", other entries beside
            torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, path)
        else:
            torch.save(state, path)
        enc = VisionEncoder.create(arch, pretrained=str(path), image_size=64).eval()
        assert enc.out_dim == {"resnet50": 2048}.get(arch, 512) and enc.num_tokens == 4
        with torch.no_grad():
            feats = torch.nn.Sequential(*list(ref.children())[:-2])((x - enc.mean) / enc.std)  # (B, D, 2, 2)
            assert torch.allclose(enc(x) - enc.pos_embed, feats.flatten(2).transpose(1, 2), atol=1e-5), arch
    # the weights of another depth: a one-line error naming the file and the fix
    with pytest.raises(ConfigError) as e:
        VisionEncoder.create("resnet50", pretrained=str(tmp_path / "r18.pth"))
    assert "r18.pth" in one_line(e) and "resnet50" in str(e.value) and "vision_encoder" in str(e.value)
    with pytest.raises(ConfigError, match="does not exist"):
        VisionEncoder.create("resnet18", pretrained=str(tmp_path / "missing.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="could not read"):
        VisionEncoder.create("resnet18", pretrained=str(tmp_path / "junk.pth"))


def test_wrong_folders_give_one_line_errors(hf, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    root = hf[0]
    with pytest.raises(ConfigError) as e:  # a DINOv2 folder given to the CLIP encoder
        VLAModel(vision_encoder="clip", vision_pretrained=str(root / "dinov2"), **TINY)
    msg = one_line(e)
    assert str(root / "dinov2") in msg and "'dinov2' model" in msg and "model.vision_encoder: dinov2" in msg
    with pytest.raises(ConfigError) as e:
        VisionEncoder.create("siglip", pretrained=str(root / "clip_full"))
    assert "model.vision_encoder: clip" in one_line(e)
    with pytest.raises(ConfigError) as e:
        VisionEncoder.create("dinov2", pretrained=str(tmp_path / "nowhere"))
    assert str(tmp_path / "nowhere") in one_line(e) and "does not exist" in str(e.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError) as e:
        VisionEncoder.create("clip", pretrained=str(tmp_path / "empty"))
    assert "no config.json" in one_line(e) and "save_pretrained" in str(e.value)
    bad = tmp_path / "bad_weights"
    shutil.copytree(root / "clip", bad)
    (bad / "model.safetensors").write_bytes(b"broken")
    with pytest.raises(ConfigError) as e:
        VisionEncoder.create("clip", pretrained=str(bad))
    assert str(bad) in one_line(e) and "save_pretrained" in str(e.value)
    with pytest.raises(ConfigError, match="unknown vision encoder 'vit'"):
        VisionEncoder.create("vit")


def test_vision_projector_factory_and_shapes():
    tokens = torch.randn(3, 10, 24)  # (B, N, Dv)
    for kind, cls, n_out in (("mlp", MLPProjector, 10), ("attention", AttentionProjector, 5),
                             ("perceiver", PerceiverResampler, 5)):
        proj = VisionProjector(24, 32, projector_type=kind, num_tokens=5, num_heads=4, num_layers=3)
        assert type(proj) is cls and isinstance(proj, VisionProjector)
        out = proj(tokens)
        assert out.shape == (3, n_out, 32) and proj.output_tokens(10) == n_out
        # pooled projectors take any number of visual tokens and mix them: each output depends on every input
        x = tokens.clone().requires_grad_(True)
        (proj(x)[:, 0] * torch.randn(3, 32)).sum().backward()  # a random read-out of the first output token
        assert bool((x.grad.abs().sum(-1) > 0).all()) == (kind != "mlp")
    assert len(VisionProjector(24, 32, "perceiver", num_layers=3).layers) == 3
    assert VisionProjector(24, 32, "attention", num_tokens=7)(torch.randn(2, 50, 24)).shape == (2, 7, 32)
    with pytest.raises(ConfigError, match="projection.num_heads"):
        VisionProjector(24, 30, "attention", num_heads=4)
    with pytest.raises(ConfigError, match="model.projector"):
        VisionProjector(24, 32, "qformer")
    # direct construction of a subclass is the ordinary constructor
    assert AttentionProjector(24, 32, num_tokens=2, num_heads=2)(tokens).shape == (3, 2, 32)


def test_hf_encoders_share_one_base():
    from vla_engine.models import ClipEncoder, Dinov2Encoder, SiglipEncoder

    for cls in (SiglipEncoder, ClipEncoder, Dinov2Encoder):
        assert issubclass(cls, HFVisionEncoder) and "forward" not in cls.__dict__ and "__init__" not in cls.__dict__
