"""A LeRobot SmolVLA policy folder (lerobot 0.4 ``save_pretrained`` + policy processors) loaded by
``SmolVLAWrapper.from_lerobot`` acts like LeRobot's own ``SmolVLAPolicy``: same actions from the same
observation, instruction and noise; same training loss from the same noise and time.

The checkpoint is written here by lerobot itself, on a tiny SmolVLM saved to a folder (1-layer vision tower,
4-layer 64-wide text model with grouped-query attention and rope_theta 1e5, a byte tokenizer with SmolVLM's
image tokens)."""

import json

import pytest
import torch

tf = pytest.importorskip("transformers")
pytest.importorskip("num2words")  # SmolVLMProcessor needs it
pytest.importorskip("serial")  # lerobot's smolvla module imports its motors bus (pyserial)
smolvla_cfg = pytest.importorskip("lerobot.policies.smolvla.configuration_smolvla")
smolvla_mod = pytest.importorskip("lerobot.policies.smolvla.modeling_smolvla")
smolvla_proc = pytest.importorskip("lerobot.policies.smolvla.processor_smolvla")
from lerobot.configs.types import FeatureType, PolicyFeature  # noqa: E402

from vla_engine.errors import CheckpointError  # noqa: E402
from vla_engine.models import build_byte_tokenizer  # noqa: E402
from vla_engine.models.vla import VLAModel  # noqa: E402
from vla_engine.models.wrappers import SmolVLAWrapper  # noqa: E402

CHUNK, MAX_STATE, MAX_ACTION = 4, 6, 5
SPECIALS = {"fake_image_token": "<fake_token_around_image>", "image_token": "<image>",
            "global_image_token": "<global-img>", "end_of_utterance_token": "<end_of_utterance>"}
LAYOUTS = {"every-layer": dict(num_vlm_layers=2), "half-depth-expert": dict(num_vlm_layers=4, num_expert_layers=2,
                                                                self_attn_every_n_layers=4)}


def make_vlm(d):
    """A tiny SmolVLM folder: weights, config, tokenizer and processor (what lerobot reads from vlm_model_name)."""
    tok = build_byte_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": list(SPECIALS.values())})
    tok.save_pretrained(d)
    f = d / "tokenizer_config.json"
    data = json.loads(f.read_text())
    data["extra_special_tokens"] = SPECIALS  # tokenizer.fake_image_token_id etc., which SmolVLA reads
    f.write_text(json.dumps(data))
    tok = tf.AutoTokenizer.from_pretrained(str(d))
    cfg = tf.SmolVLMConfig(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        text_config=dict(model_type="llama", vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                         rope_theta=100000.0, max_position_embeddings=512, pad_token_id=tok.pad_token_id),
        scale_factor=2, image_token_id=tok.convert_tokens_to_ids("<image>"))
    torch.manual_seed(0)
    tf.SmolVLMForConditionalGeneration(cfg).save_pretrained(d)
    proc = tf.SmolVLMProcessor(
        image_processor=tf.SmolVLMImageProcessor(do_image_splitting=False, size={"longest_edge": 32},
                                                 max_image_size={"longest_edge": 32}),
        tokenizer=tok, video_processor=tf.SmolVLMVideoProcessor(), image_seq_len=4)
    proc.save_pretrained(d)
    return d


def make_policy(vlm_dir, out, **layout):
    cfg = smolvla_cfg.SmolVLAConfig(
        vlm_model_name=str(vlm_dir), load_vlm_weights=False, chunk_size=CHUNK, n_action_steps=CHUNK,
        max_state_dim=MAX_STATE, max_action_dim=MAX_ACTION, num_steps=3, resize_imgs_with_padding=(32, 32),
        tokenizer_max_length=16, device="cpu",
        input_features={"observation.images.front": PolicyFeature(FeatureType.VISUAL, (3, 24, 40)),
                        "observation.images.wrist": PolicyFeature(FeatureType.VISUAL, (3, 32, 32)),
                        "observation.state": PolicyFeature(FeatureType.STATE, (3,))},
        output_features={"action": PolicyFeature(FeatureType.ACTION, (2,))}, **layout)
    torch.manual_seed(1)
    policy = smolvla_mod.SmolVLAPolicy(cfg)
    with torch.no_grad():  # every weight random (not LeRobot's zero-ish defaults), so every path counts
        for p in policy.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    stats = {"observation.state": {"mean": torch.tensor([0.1, -0.2, 0.3]), "std": torch.tensor([0.5, 2.0, 1.5])},
             "action": {"mean": torch.tensor([0.4, -0.1]), "std": torch.tensor([0.3, 0.7])}}
    pre, post = smolvla_proc.make_smolvla_pre_post_processors(cfg, dataset_stats=stats)
    policy.save_pretrained(out)
    pre.save_pretrained(out)
    post.save_pretrained(out)
    # SmolVLM's patch positions are 0..P-1 (as trained; transformers <= 4.54). transformers 4.55+ in float32
    # buckets a full grid one row/column low (a transformers bug); vla_engine keeps the trained
    # positions, so the reference does too.
    emb = policy.model.vlm_with_expert.vlm.model.vision_model.embeddings.position_embedding
    emb.register_forward_hook(lambda mod, args, o: mod.weight[None, : o.shape[1]].expand_as(o))
    return policy.eval(), pre, post


@pytest.fixture(scope="module")
def vlm_dir(tmp_path_factory):
    return make_vlm(tmp_path_factory.mktemp("smolvlm"))


@pytest.fixture(scope="module", params=list(LAYOUTS))
def lerobot(request, vlm_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp(f"smolvla-{request.param}")
    policy, pre, post = make_policy(vlm_dir, out, **LAYOUTS[request.param])
    return out, policy, pre, post


def observation(b=2, seed=3):
    g = torch.Generator().manual_seed(seed)
    return {"observation.images.front": torch.rand(b, 3, 24, 40, generator=g),  # padded to 32 x 32 at the top
            "observation.images.wrist": torch.rand(b, 3, 32, 32, generator=g),
            "observation.state": torch.randn(b, 3, generator=g),
            "task": ["pick up the red cube", "open"][:b]}  # different lengths: padded instruction tokens


def lerobot_chunk(policy, pre, post, obs, noise):
    batch = pre({k: (list(v) if k == "task" else v.clone()) for k, v in obs.items()})
    with torch.no_grad():
        return post(policy.predict_action_chunk(batch, noise=noise.clone()))


def test_actions_match_lerobot_given_the_same_noise(lerobot):
    folder, policy, pre, post = lerobot
    model = SmolVLAWrapper.from_lerobot(str(folder))
    cfg = model.config
    assert (cfg.prompt_format, cfg.action_head, cfg.projector, cfg.image_resize) == \
        ("smolvla", "smolvla-expert", "identity", "pad")
    assert (cfg.action_dim, cfg.state_dim, cfg.head.max_action_dim, cfg.chunk_size) == (2, 3, MAX_ACTION, CHUNK)
    assert cfg.image_keys == ["observation.images.front", "observation.images.wrist"]
    assert cfg.head.hidden_dim == 48 and model.vlm_frozen and model.vision_frozen  # LeRobot's train_expert_only
    obs = observation()
    for seed in (0, 1):
        noise = torch.randn(2, CHUNK, MAX_ACTION, generator=torch.Generator().manual_seed(seed))
        ref = lerobot_chunk(policy, pre, post, obs, noise)
        ours = model.predict_action_chunk(obs, noise=noise)
        assert ours.shape == ref.shape == (2, CHUNK, 2)
        torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)
    # select_action: the first action of the chunk, then the queue, as LeRobot's
    policy.reset()
    model.reset()
    noise = torch.randn(2, CHUNK, MAX_ACTION, generator=torch.Generator().manual_seed(5))
    batch = pre({k: (list(v) if k == "task" else v.clone()) for k, v in obs.items()})
    with torch.no_grad():
        ref = [post(policy.select_action(dict(batch), noise=noise.clone())) for _ in range(2)]
    ours = [model.select_action(obs, noise=noise) for _ in range(2)]
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_training_loss_matches_lerobot_and_a_step_trains_the_expert(lerobot):
    folder, policy, pre, _ = lerobot
    model = SmolVLAWrapper.from_lerobot(str(folder))
    obs = observation()
    actions = torch.randn(2, CHUNK, 2, generator=torch.Generator().manual_seed(7))
    noise = torch.randn(2, CHUNK, MAX_ACTION, generator=torch.Generator().manual_seed(8))
    time = torch.tensor([0.3, 0.8])
    batch = pre({**{k: (list(v) if k == "task" else v.clone()) for k, v in obs.items()}, "action": actions.clone()})
    with torch.no_grad():
        ref, _ = policy.forward(batch, noise=noise.clone(), time=time.clone())
        target = model.action_normalizer.normalize(actions)
        ours, _ = model.action_head.compute_loss_lm(model.backbone, *model.input_sequence(obs), target,
                                                    noise=noise, time=time)
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)

    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and all(not p.requires_grad for p in model.backbone.parameters())  # train_expert_only
    before = model.action_head.action_out_proj.weight.detach().clone()
    opt = torch.optim.AdamW(trainable, lr=1e-3)
    loss, info = model({**obs, "action": actions, "action_is_pad": torch.tensor([[False] * CHUNK, [False] * 3 + [True]])})
    assert torch.isfinite(loss) and "flow_mse" in info
    loss.backward()
    assert model.state_proj.weight.grad is not None and model.state_proj.weight.grad.abs().sum() > 0
    opt.step()
    assert not torch.equal(before, model.action_head.action_out_proj.weight)


def test_from_pretrained_dispatches_and_the_converted_model_round_trips(lerobot, tmp_path):
    folder = lerobot[0]
    model = VLAModel.from_pretrained(folder)
    assert type(model) is SmolVLAWrapper and model.has_normalization()
    obs = observation()
    noise = torch.randn(2, CHUNK, MAX_ACTION, generator=torch.Generator().manual_seed(9))
    before = model.predict_action_chunk(obs, noise=noise)
    model.save_pretrained(tmp_path / "ckpt")
    again = VLAModel.from_pretrained(tmp_path / "ckpt")
    assert type(again) is VLAModel and again.config == model.config
    again = SmolVLAWrapper.from_pretrained(tmp_path / "ckpt")
    torch.testing.assert_close(again.predict_action_chunk(obs, noise=noise), before, atol=1e-6, rtol=1e-6)
    chunk = again.predict_action_chunk(obs)  # its own noise
    assert chunk.shape == (2, CHUNK, 2) and torch.isfinite(chunk).all()


def _one_line_error(folder, match, **kw):
    with pytest.raises(CheckpointError, match=match) as e:
        SmolVLAWrapper.from_lerobot(str(folder), **kw)
    assert "\n" not in str(e.value)


def test_missing_corrupt_or_foreign_folders_give_one_line_errors(lerobot, vlm_dir, tmp_path):
    import shutil

    folder = lerobot[0]
    _one_line_error(tmp_path / "nowhere", "does not exist")
    (tmp_path / "empty").mkdir()
    _one_line_error(tmp_path / "empty", "no config.json")
    _one_line_error(vlm_dir, "not a LeRobot SmolVLA config")  # a VLM folder, not a policy
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    (bad / "model.safetensors").write_bytes(b"not safetensors at all")
    _one_line_error(bad, "corrupt")
    (bad / "model.safetensors").unlink()
    _one_line_error(bad, "no model.safetensors")
    nojson = tmp_path / "nojson"
    shutil.copytree(folder, nojson)
    (nojson / "config.json").write_text("{not json")
    _one_line_error(nojson, "not valid JSON")
    novlm = tmp_path / "novlm"
    shutil.copytree(folder, novlm)
    data = json.loads((novlm / "config.json").read_text())
    data["vlm_model_name"] = "SomeOrg/NotCachedVLM"
    (novlm / "config.json").write_text(json.dumps(data))
    _one_line_error(novlm, "pass vlm=")
    assert SmolVLAWrapper.from_lerobot(str(novlm), vlm=str(vlm_dir)).config.action_head == "smolvla-expert"
    with pytest.raises(CheckpointError, match="OpenVLA"):  # unnorm_key is OpenVLA's
        VLAModel.from_pretrained(folder, unnorm_key="x")
