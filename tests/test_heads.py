"""The Gaussian, diffusion and transformer action heads: standalone, inside a VLAModel, save/load,
sampling, temporal ensembling and clear errors."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch.distributions import Normal

from vla_engine.config.base import ConfigError
from vla_engine.config.model_config import ModelConfig
from vla_engine.models import (DiffusionActionHead, GaussianMLPActionHead, TransformerActionHead, VLAModel,
                               create_vla_model)
from vla_engine.models.heads import HeadError

# A tiny VLA for every model test: 32 px images, 2-layer 32-d LM.
TINY = dict(image_size=32, vision_dim=16, llm_hidden_size=32, llm_num_heads=2, llm_intermediate_size=64,
            head_hidden_dim=32, head_num_heads=2, vision_num_heads=2, vision_patch_size=8, max_text_tokens=16)


@pytest.fixture(autouse=True)
def one_thread():
    # tiny ops on a shared 2-core machine: one thread avoids OpenMP spin-waits
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_batch(b: int = 4, size: int = 32, state_dim: int = 2, action_dim: int = 2, chunk: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return {
        "observation.images.front": torch.rand(b, 3, size, size, generator=g),
        "observation.state": torch.randn(b, state_dim, generator=g),
        "task": [f"push the block number {i % 3} to the left" if i % 2 else "reach" for i in range(b)],
        "action": torch.randn(b, chunk, action_dim, generator=g),
        "action_is_pad": torch.zeros(b, chunk, dtype=torch.bool),
    }


def obs_of(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if k not in ("action", "action_is_pad")}


def train(head, feats, actions, steps: int, lr: float = 3e-3, batch: int = 0, **kwargs) -> list[float]:
    """Adam on fixed (features, actions); ``batch`` > 0 draws random minibatches. Returns the losses."""
    torch.manual_seed(0)
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, feats.shape[0], (batch,)) if batch else slice(None)
        kw = {k: v[idx] for k, v in kwargs.items()}
        loss, _ = head.compute_loss(feats[idx], actions[idx], **kw)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


def mean_of(xs: list[float]) -> float:
    return sum(xs) / len(xs)


# ------------------------------------------------------------------------------------------------
# Gaussian head
# ------------------------------------------------------------------------------------------------
def test_gaussian_seed_shape_learns_and_matches_torch_distributions():
    seed = GaussianMLPActionHead(input_dim=1024, action_dim=7, hidden_dim=512, min_std=0.01, max_std=1.0)
    a, lp = seed.sample(torch.randn(2, 1024))
    assert a.shape == (2, 1, 7) and lp.shape == (2,)

    torch.manual_seed(0)
    head = GaussianMLPActionHead(input_dim=8, action_dim=3, hidden_dim=64, chunk_size=2, min_std=0.05, max_std=2.0)
    feats = torch.randn(32, 8)
    actions = (feats @ torch.randn(8, 6)).view(32, 2, 3) * 0.3  # (32, 2, 3) a fixed function of the features
    _, info0 = head.compute_loss(feats, actions)
    losses = train(head, feats, actions, 200)
    _, info = head.compute_loss(feats, actions)
    assert mean_of(losses[-10:]) < mean_of(losses[:10]) - 1.0  # NLL falls (it can go below 0)
    assert info["action_l1"] < 0.5 * info0["action_l1"] and info["entropy"] < info0["entropy"]
    assert torch.allclose(head.predict(feats), head(feats)[0])  # predict = the mean

    f = feats[:4]
    mean, std = head(f)  # (4, 2, 3) each
    ref = Normal(mean, std)
    acts = torch.randn(4, 2, 3)
    assert torch.allclose(head.log_prob(f, acts), ref.log_prob(acts).sum(dim=(1, 2)), atol=1e-5)
    assert torch.allclose(head.entropy(f), ref.entropy().sum(dim=(1, 2)), atol=1e-5)
    torch.manual_seed(3)
    sample, lp = head.sample(f)
    assert torch.allclose(lp, ref.log_prob(sample).sum(dim=(1, 2)), atol=1e-5)
    torch.manual_seed(3)
    assert torch.allclose(sample, ref.rsample(), atol=1e-6)  # the same draw as torch.distributions
    sample.sum().backward()  # reparameterised: SAC back-propagates through the sample
    assert head.mean_layer.weight.grad is not None
    det, det_lp = head.sample(f, deterministic=True)
    assert torch.equal(det, mean) and torch.allclose(det_lp, ref.log_prob(mean).sum(dim=(1, 2)))
    # the empirical moments of many samples are the predicted mean and std
    many, _ = head.sample(f[:1].expand(20000, -1))
    assert torch.allclose(many.mean(0), mean[0], atol=0.05 * float(std.detach().max()) + 1e-3)
    assert torch.allclose(many.std(0), std[0], rtol=0.05)
    # padded steps do not count
    pad = torch.tensor([[False, True]] * 4)
    assert torch.allclose(head.log_prob(f, acts, pad), ref.log_prob(acts)[:, 0].sum(-1), atol=1e-5)
    # the std stays inside [min_std, max_std] whatever the input
    with torch.no_grad():
        _, s = head(feats * 1e4)
    assert float(s.min()) >= 0.05 and float(s.max()) <= 2.0


# ------------------------------------------------------------------------------------------------
# Diffusion head
# ------------------------------------------------------------------------------------------------
def two_mode_problem():
    """Two feature vectors, each with one target chunk (4 steps, 2-d)."""
    feats = torch.randn(2, 8, generator=torch.Generator().manual_seed(1))
    base = torch.tensor([[0.5, -0.5], [-0.3, 0.8]])  # (2, A)
    targets = base[:, None, :] + torch.linspace(0, 0.3, 4)[None, :, None]  # (2, 4, 2)
    return feats, targets


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample"])
def test_diffusion_learns_and_ddim_and_ddpm_sample_near_the_data(prediction_type):
    torch.manual_seed(0)
    head = DiffusionActionHead(action_dim=2, num_diffusion_steps=100, hidden_dim=64, input_dim=8, chunk_size=4,
                               num_layers=2, prediction_type=prediction_type)
    feats, targets = two_mode_problem()
    losses = train(head, feats, targets, 500, batch=64)
    assert mean_of(losses[-20:]) < 0.25 * mean_of(losses[:20])
    head.eval()
    f, tg = feats.repeat_interleave(32, 0), targets.repeat_interleave(32, 0)  # (64, 8), (64, 4, 2)
    ddim = head.sample(f, generator=torch.Generator().manual_seed(0))  # the defaults: DDIM, 10 steps
    ddpm = head.sample(f, num_inference_steps=100, use_ddim=False, generator=torch.Generator().manual_seed(0))
    for s in (ddim, ddpm):
        err = (s - tg).abs().amax(dim=(1, 2))  # (64,) worst coordinate of each sample
        assert float(err.mean()) < 0.15 and float(err.quantile(0.9)) < 0.35, err  # the two targets are ~1 apart
        other = (s - tg.flip(0)).abs().amax(dim=(1, 2))  # distance to the other feature's target
        assert float((err < other).float().mean()) > 0.95  # conditioned on the features
    assert head.ddim_scheduler.num_inference_steps == 10 and head.ddpm_scheduler.num_inference_steps == 100
    assert head.noise_scheduler.num_inference_steps is None  # sampling never touches the training scheduler
    # DDIM is deterministic given the noise; predict = sample with the defaults
    again = head.sample(f, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again, ddim)
    torch.manual_seed(5)
    p = head.predict(f)
    torch.manual_seed(5)
    assert torch.equal(p, head.sample(f))
    assert not torch.equal(head.sample(f, generator=torch.Generator().manual_seed(1)), ddim)


def test_diffusion_loss_masks_padding_and_clips_via_the_scheduler():
    seed = DiffusionActionHead(action_dim=7, num_diffusion_steps=100, hidden_dim=512)
    seed.set_input_dim(48)
    assert seed.predict(torch.randn(2, 48)).shape == (2, 1, 7)
    torch.manual_seed(0)
    head = DiffusionActionHead(action_dim=2, hidden_dim=32, input_dim=8, chunk_size=4, num_layers=1,
                               prediction_type="sample", clip_sample_range=1.0)
    feats, targets = two_mode_problem()
    wild = targets.clone()
    wild[:, 2:] = 1e3  # garbage in the padded steps
    pad = torch.tensor([[False, False, True, True]] * 2)
    torch.manual_seed(1)
    masked, _ = head.compute_loss(feats, wild, pad)
    torch.manual_seed(1)
    unmasked, _ = head.compute_loss(feats, wild)
    assert float(masked.detach()) < 10.0 < 1e4 < float(unmasked.detach())
    assert head.ddim_scheduler.config.clip_sample and head.ddim_scheduler.config.clip_sample_range == 1.0
    out = head.sample(torch.randn(3, 8) * 100)  # an untrained head on wild features stays inside the clip range
    assert float(out.abs().max()) <= 1.0 + 1e-5
    # the config picks the clip range from the normalisation unless it is given
    cfg = dict(action_head="diffusion", head=dict(hidden_dim=16, num_layers=1))
    assert DiffusionActionHead.from_config(ModelConfig(**cfg, normalization="min_max"), 8).clip_sample_range == 1.0
    assert DiffusionActionHead.from_config(ModelConfig(**cfg), 8).clip_sample_range == 5.0
    assert not DiffusionActionHead.from_config(ModelConfig(**cfg, normalization="none"), 8).clip_sample
    clipped = ModelConfig(action_head="diffusion", head=dict(hidden_dim=16, num_layers=1, clip_sample=2.0))
    assert DiffusionActionHead.from_config(clipped, 8).clip_sample_range == 2.0


# ------------------------------------------------------------------------------------------------
# Transformer head
# ------------------------------------------------------------------------------------------------
def test_diffusion_noise_samples_draw_k_noises_per_example():
    """noise_samples=K: each example is noised K times per batch (one backbone pass, K denoiser draws); the loss
    is the mean over the K * B draws, masks repeat with the examples, and the setting round-trips the config."""
    torch.manual_seed(0)
    head = DiffusionActionHead(action_dim=2, hidden_dim=32, input_dim=8, chunk_size=4, num_layers=1, noise_samples=3)
    seen = []
    head.denoiser.register_forward_hook(lambda m, inp, out: seen.append(inp[0].shape[0]))
    feats, targets = two_mode_problem()  # (2, 8), (2, 4, 2)
    wild = targets.clone()
    wild[:, 2:] = 1e3
    pad = torch.tensor([[False, False, True, True]] * 2)
    head.train()
    loss, _ = head.compute_loss(feats, wild, pad)
    assert seen == [6] and float(loss.detach()) < 10.0  # 3 draws of 2 examples; the padded garbage stays masked
    head.eval()
    head.compute_loss(feats, targets)
    assert seen[-1] == 2  # evaluation losses use one draw
    cfg = ModelConfig(action_head="diffusion", head=dict(hidden_dim=16, num_layers=1, noise_samples=4))
    built = DiffusionActionHead.from_config(cfg, 8)
    assert built.noise_samples == 4 and built.config_fields()["head"]["noise_samples"] == 4
    with pytest.raises(HeadError, match="noise_samples must be >= 1"):
        DiffusionActionHead(action_dim=2, noise_samples=0)


def test_transformer_attends_to_context_respects_masks_and_is_causal():
    seed = TransformerActionHead(action_dim=7, chunk_size=16, num_layers=4)
    assert seed.uses_context and seed.causal and seed.action_loss == "mse"
    seed.set_input_dim(48)
    assert seed.predict(torch.randn(2, 48)).shape == (2, 16, 7)  # no context: the feature vector is the memory

    torch.manual_seed(0)
    head = TransformerActionHead(action_dim=2, chunk_size=4, num_layers=1, hidden_dim=32, num_heads=2, dropout=0.0,
                                 input_dim=8)
    # the target lives only in the context tokens: their mean over the real (unmasked) tokens
    n, b = 5, 64
    ctx = torch.randn(b, n, 8)
    mask = torch.ones(b, n, dtype=torch.bool)
    mask[::2, 3:] = False  # every other sample has 2 padding tokens
    real = (ctx * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)  # (B, 8)
    actions = torch.stack([real[:, :2], real[:, 2:4], -real[:, :2], real[:, 4:6]], dim=1)  # (B, 4, 2)
    feats = torch.zeros(b, 8)  # the feature vector carries nothing
    losses = train(head, feats, actions, 150, context=ctx, context_mask=mask)
    assert mean_of(losses[-10:]) < 0.5 * mean_of(losses[:10])

    head.eval()
    out = head.predict(feats, ctx, mask)
    changed = ctx.clone()
    changed[~mask] = 100.0  # padding tokens are not attended to
    assert torch.allclose(head.predict(feats, changed, mask), out, atol=1e-5)
    assert not torch.allclose(head.predict(feats, ctx, None), out, atol=1e-3)  # the mask is used

    with torch.no_grad():  # causal: step k sees only the queries of steps <= k
        head.queries[2:] += torch.randn_like(head.queries[2:])  # not a constant: LayerNorm would remove it
    moved = head.predict(feats, ctx, mask)
    assert torch.allclose(moved[:, :2], out[:, :2], atol=1e-5) and not torch.allclose(moved[:, 2:], out[:, 2:])
    bidir = TransformerActionHead(action_dim=2, chunk_size=4, num_layers=1, hidden_dim=32, num_heads=2,
                                  input_dim=8, causal=False).eval()
    before = bidir.predict(feats, ctx, mask)
    with torch.no_grad():
        bidir.queries[2:] += torch.randn_like(bidir.queries[2:])
    assert not torch.allclose(bidir.predict(feats, ctx, mask)[:, :2], before[:, :2], atol=1e-4)


# ------------------------------------------------------------------------------------------------
# Inside the VLA model
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("head", ["gaussian", "diffusion", "transformer"])
def test_head_by_name_trains_inside_the_vla(head):
    torch.manual_seed(0)
    model = create_vla_model("tiny", action_head=head, action_dim=2, state_dim=2, chunk_size=4, n_action_steps=4,
                             random_shift=0, **TINY)
    assert model.action_head.name == head and model.action_head.input_dim == 32
    batch = make_batch()
    batch["action_is_pad"][0, 2:] = True
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(25):
        loss, info = model(batch)
        opt.zero_grad()
        loss.backward()
        losses.append(info["loss"])
        if len(losses) == 2:  # gradients reach the head and the backbone (diffusion's output layer starts at 0)
            for part in (model.action_head, model.backbone, model.vision_encoder):
                assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in part.parameters()), part
        opt.step()
    assert all(math.isfinite(x) for x in losses) and mean_of(losses[-5:]) < mean_of(losses[:5])
    model.eval()
    chunk = model.predict_action_chunk(obs_of(batch))
    assert chunk.shape == (4, 4, 2) and torch.isfinite(chunk).all()


def hand_built(kind: str):
    """Each head built by hand with settings off the config defaults (the round trip must keep them)."""
    if kind == "gaussian":
        return GaussianMLPActionHead(action_dim=2, hidden_dim=24, min_std=0.1, max_std=0.5, num_layers=3, chunk_size=4)
    if kind == "diffusion":
        return DiffusionActionHead(action_dim=2, num_diffusion_steps=50, hidden_dim=24, chunk_size=4, num_layers=1,
                                   prediction_type="sample", num_inference_steps=5, beta_schedule="linear",
                                   clip_sample_range=2.0)
    return TransformerActionHead(action_dim=2, chunk_size=4, num_layers=1, hidden_dim=24, num_heads=3, dropout=0.0,
                                 causal=False, action_loss="smooth_l1")


@pytest.mark.parametrize("kind", ["gaussian", "diffusion", "transformer"])
def test_hand_built_head_save_load_gives_identical_predictions(tmp_path, kind):
    torch.manual_seed(0)
    head = hand_built(kind)
    sizes = {k: v for k, v in TINY.items() if not k.startswith("head_")}  # the head brings its own sizes
    model = VLAModel(vlm_name_or_path="tiny", action_head=head, state_dim=2, n_action_steps=4, **sizes)
    assert model.action_head is head and model.config.action_head == kind
    loss, _ = model(make_batch())
    loss.backward()
    model.eval()
    obs = obs_of(make_batch(b=3, seed=1))
    torch.manual_seed(7)  # the diffusion head draws its initial noise from the global generator
    before = model.predict_action_chunk(obs)
    loaded = VLAModel.from_pretrained(model.save_pretrained(tmp_path / kind))
    assert loaded.config == model.config
    assert loaded.action_head.config_fields() == head.config_fields()
    torch.manual_seed(7)
    assert torch.equal(loaded.predict_action_chunk(obs), before)
    copy.deepcopy(loaded)  # EMA copies the model
    if kind == "diffusion":
        assert loaded.action_head.ddim_scheduler.config.beta_schedule == "linear"
        assert loaded.action_head.ddim_scheduler.config.clip_sample_range == 2.0
    if kind == "transformer":
        assert loaded.action_head.causal is False and loaded.action_head.action_loss == "smooth_l1"


def test_training_keeps_the_heads_own_loss_unless_the_training_config_names_one():
    """model.action_loss=l1 trains with L1 through a trainer; training.action_loss, when set, replaces it."""
    from vla_engine import BehavioralCloning, ILConfig

    def fitted_loss(cfg):
        model = create_vla_model("tiny", action_head="transformer", action_dim=2, state_dim=2, chunk_size=4,
                                 action_loss="l1", **TINY)
        BehavioralCloning(model, cfg).prepare_model()
        return model.action_head.action_loss, model.config.action_loss

    assert ILConfig().action_loss is None
    assert fitted_loss(ILConfig()) == ("l1", "l1")
    assert fitted_loss(ILConfig(action_loss="mse")) == ("mse", "mse")  # a training config given a loss sets it


def test_set_action_loss_sets_the_head_and_the_config(tmp_path):
    model = create_vla_model("tiny", action_head="transformer", action_dim=2, state_dim=2, chunk_size=4, **TINY)
    model.set_action_loss("smooth_l1")
    assert model.action_head.action_loss == model.config.action_loss == "smooth_l1"
    model.save_pretrained(tmp_path / "ckpt")
    assert VLAModel.from_pretrained(tmp_path / "ckpt").action_head.action_loss == "smooth_l1"
    with pytest.raises(ConfigError, match="action_loss 'huber' is not known; choose one of: mse, l1, smooth_l1"):
        model.set_action_loss("huber")


def test_chunk_loss_decay_weighs_the_first_steps_and_round_trips(tmp_path):
    from vla_engine.models.heads import masked_action_loss

    pred, target = torch.zeros(3, 4, 2), torch.ones(3, 4, 2)
    target[:, 1:] = 3.0  # step 0 off by 1, steps 1-3 off by 3
    pad = torch.zeros(3, 4, dtype=torch.bool)
    pad[0, 3] = True
    assert torch.isclose(masked_action_loss(pred, target, None, "mse", 1.0), torch.tensor((1 + 3 * 9) / 4))
    w = torch.tensor([1.0, 0.5, 0.25, 0.125])
    expected = (w * torch.tensor([1.0, 9, 9, 9])).sum() / w.sum()
    assert torch.isclose(masked_action_loss(pred, target, None, "mse", 0.5), expected)
    # padded steps drop out of the weighted mean as well
    with_pad = (3 * (w * torch.tensor([1.0, 9, 9, 9])).sum() - w[3] * 9) / (3 * w.sum() - w[3])
    assert torch.isclose(masked_action_loss(pred, target, pad, "mse", 0.5), with_pad)

    model = create_vla_model("tiny", action_head="transformer", action_dim=2, state_dim=2, chunk_size=4,
                             chunk_loss_decay=0.5, **TINY)
    assert model.action_head.chunk_loss_decay == 0.5
    batch = make_batch()
    loss, _ = model(batch)
    assert torch.isfinite(loss)
    model.save_pretrained(tmp_path / "m")
    assert VLAModel.from_pretrained(tmp_path / "m").action_head.chunk_loss_decay == 0.5
    with pytest.raises(ConfigError, match="'chunk_loss_decay' is not a setting of the diffusion head"):
        ModelConfig(action_head="diffusion", head={"chunk_loss_decay": 0.5})
    with pytest.raises(HeadError, match="chunk_loss_decay must be in"):
        TransformerActionHead(chunk_loss_decay=0.0)


def test_temporal_ensembling_end_to_end_with_the_transformer_head():
    torch.manual_seed(0)
    coeff, c = 0.5, 4
    model = create_vla_model("tiny", action_head="transformer", action_dim=2, state_dim=2, chunk_size=c,
                             n_action_steps=1, temporal_ensemble_coeff=coeff, **TINY).eval()
    chunks = []
    predict = model.predict_action_chunk

    def recording(o):
        chunks.append(predict(o))  # (B, chunk, A)
        return chunks[-1]

    model.predict_action_chunk = recording
    w = torch.exp(-coeff * torch.arange(c, dtype=torch.float32))  # weight i = 0 for the oldest prediction
    for t in range(6):
        action = model.select_action(obs_of(make_batch(b=2, seed=10 + t)))  # a new observation every step
        assert action.shape == (2, 2) and len(chunks) == t + 1  # ACT: a new chunk at every step
        preds = [chunks[j][:, t - j] for j in range(max(0, t - c + 1), t + 1)]  # oldest first
        weights = w[: len(preds)]
        expected = sum(wi * p for wi, p in zip(weights, preds)) / weights.sum()
        assert torch.allclose(action, expected, atol=1e-6)
    assert not torch.allclose(action, chunks[-1][:, 0])  # it is an average, not the latest chunk
    model.reset()
    first = model.select_action(obs_of(make_batch(b=2, seed=99)))
    assert torch.allclose(first, chunks[-1][:, 0])  # a new episode starts from one prediction


def test_configure_inference_changes_how_a_trained_chunking_model_acts(tmp_path):
    torch.manual_seed(0)
    c = 4
    model = create_vla_model("tiny", action_head="transformer", action_dim=2, state_dim=2, chunk_size=c,
                             n_action_steps=1, **TINY).eval()
    chunks = []
    predict = model.predict_action_chunk
    model.predict_action_chunk = lambda o: chunks.append(predict(o)) or chunks[-1]

    # open loop: 3 actions of each chunk, one prediction per 3 steps
    model.configure_inference(n_action_steps=3)
    acts = [model.select_action(obs_of(make_batch(b=2, seed=t))) for t in range(4)]
    assert len(chunks) == 2 and all(torch.equal(acts[i], chunks[0][:, i]) for i in range(3))
    assert torch.equal(acts[3], chunks[1][:, 0])

    # ensembling weighted towards the newest prediction (negative coefficient), then off again
    chunks.clear()
    model.configure_inference(n_action_steps=1, temporal_ensemble_coeff=-1.0)
    a0 = model.select_action(obs_of(make_batch(b=2, seed=10)))
    a1 = model.select_action(obs_of(make_batch(b=2, seed=11)))
    assert torch.allclose(a0, chunks[0][:, 0])
    expected = (chunks[0][:, 1] + math.e * chunks[1][:, 0]) / (1 + math.e)  # the newer weighs e times more
    assert torch.allclose(a1, expected, atol=1e-6)
    model.configure_inference(temporal_ensemble_coeff=None)
    assert torch.equal(model.select_action(obs_of(make_batch(b=2, seed=12))), chunks[-1][:, 0])

    # the setting is saved with the checkpoint
    model.configure_inference(n_action_steps=2)
    model.predict_action_chunk = predict
    model.save_pretrained(tmp_path / "m")
    assert VLAModel.from_pretrained(tmp_path / "m").config.n_action_steps == 2

    with pytest.raises(ValueError, match="cannot change chunk_size of a trained model"):
        model.configure_inference(chunk_size=8)
    with pytest.raises(ConfigError, match="n_action_steps"):
        model.configure_inference(n_action_steps=c + 1)
    with pytest.raises(ValueError, match="applies to sampling heads"):
        model.configure_inference(num_inference_steps=5)


def test_configure_inference_sets_flow_steps_and_refuses_ddim():
    model = create_vla_model("tiny", action_head="flow", action_dim=2, state_dim=2, chunk_size=4, **TINY).eval()
    assert model.action_head.sampling_settings == ("num_inference_steps",)
    model.configure_inference(num_inference_steps=3)
    assert model.action_head.num_steps == 3 and model.config.head.num_inference_steps == 3
    with pytest.raises(ValueError, match="use_ddim applies to sampling heads"):
        model.configure_inference(use_ddim=False)


def test_configure_inference_sets_diffusion_sampling():
    model = create_vla_model("tiny", action_head="diffusion", action_dim=2, state_dim=2, chunk_size=4,
                             num_diffusion_steps=20, num_inference_steps=10, **TINY).eval()
    model.configure_inference(num_inference_steps=20, use_ddim=False)
    assert (model.action_head.num_inference_steps, model.action_head.use_ddim) == (20, False)
    assert model.predict_action_chunk(obs_of(make_batch(b=2))).shape == (2, 4, 2)
    with pytest.raises(ConfigError, match="num_inference_steps"):
        model.configure_inference(num_inference_steps=50)  # more than the 20 training steps


# ------------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("build, match", [
    (lambda: GaussianMLPActionHead(min_std=0.5, max_std=0.1), "min_std < max_std"),
    (lambda: GaussianMLPActionHead(num_layers=0), "num_layers"),
    (lambda: DiffusionActionHead(prediction_type="v"), "prediction_type 'v'"),
    (lambda: DiffusionActionHead(beta_schedule="cosine"), "beta_schedule 'cosine'"),
    (lambda: DiffusionActionHead(num_diffusion_steps=10, num_inference_steps=20), "num_inference_steps"),
    (lambda: DiffusionActionHead(clip_sample_range=0.0), "clip_sample_range"),
    (lambda: TransformerActionHead(hidden_dim=30, num_heads=4), "multiple of num_heads"),
    (lambda: TransformerActionHead(chunk_size=0), "chunk_size"),
    (lambda: TransformerActionHead(action_loss="huber"), "action_loss 'huber'"),
])
def test_bad_head_arguments_are_one_line_head_errors(build, match):
    with pytest.raises(HeadError, match=match) as e:
        build()
    assert "\n" not in str(e.value)


def test_bad_calls_are_one_line_errors():
    diff = DiffusionActionHead(action_dim=2, hidden_dim=16, input_dim=8, chunk_size=4, num_layers=1)
    gauss = GaussianMLPActionHead(input_dim=8, action_dim=2, hidden_dim=16, chunk_size=4)
    trans = TransformerActionHead(action_dim=2, chunk_size=4, num_layers=1, hidden_dim=16, num_heads=2, input_dim=8)
    f = torch.randn(2, 8)
    cases = [
        (lambda: diff.sample(f, num_inference_steps=1000), "num_inference_steps"),
        (lambda: diff.sample(torch.randn(2, 9)), "expects 8-d features"),
        (lambda: diff.compute_loss(f, torch.randn(2, 3, 2)), r"actions of shape \(B, 4, 2\)"),
        (lambda: gauss.log_prob(f, torch.randn(2, 4, 3)), r"actions of shape \(B, 4, 2\)"),
        (lambda: trans.predict(f, torch.randn(2, 5, 7)), "context must be"),
        (lambda: trans.predict(f, torch.randn(2, 5, 8), torch.ones(2, 4, dtype=torch.bool)), "context_mask must be"),
        (lambda: DiffusionActionHead(action_dim=2).predict(f), "input_dim is not set"),
    ]
    for call, match in cases:
        with pytest.raises(HeadError, match=match) as e:
            call()
        assert "\n" not in str(e.value)
    for bad in (dict(num_inference_steps=500), dict(clip_sample=-1.0), dict(beta_schedule="cosine")):
        with pytest.raises(ConfigError) as e:
            create_vla_model("tiny", action_head="diffusion", head=bad, **TINY)
        assert "\n" not in str(e.value) and f"model.head.{next(iter(bad))}" in str(e.value)
