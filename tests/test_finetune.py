"""LoRA fine-tuning through peft on the VLA's language backbone, and VLAFineTuner.

Tiny models (32 px images, LM 64 x 2 for training; LM 128 x 2 for the parameter count) and a tiny
synthetic demonstration set, so the file runs in well under a minute on 2 cores.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch.utils.data import Dataset

from vla_engine.config.training_config import FineTuningConfig
from vla_engine.models import VLAModel
from vla_engine.models.lora import (LoRAError, load_adapter, lm_linear_names, lora_parameter_stats, save_adapter)
from vla_engine.train.finetune import VLAFineTuner

SMALL = dict(vision_dim=8, image_size=32, vision_pool=2, llm_hidden_size=64, llm_num_layers=2, llm_num_heads=2,
             llm_intermediate_size=128, head_hidden_dim=32, state_dim=3, action_dim=2, random_shift=0)
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


class Demos(Dataset):
    """64 frames: the action is a fixed linear function of the state; two instructions."""

    def __init__(self, n: int = 64, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.images = torch.rand(n, 3, 32, 32, generator=g)
        self.state = torch.randn(n, 3, generator=g)
        self.sign = torch.tensor([1.0 if i % 2 == 0 else -1.0 for i in range(n)])  # only names the instruction
        w = torch.randn(3, 2, generator=g)
        self.actions = self.state @ w  # (n, 2)
        self.action_dim, self.state_dim, self.chunk_size = 2, 3, 1
        self.stats = {"action": {"mean": self.actions.mean(0), "std": self.actions.std(0)},
                      "observation.state": {"mean": self.state.mean(0), "std": self.state.std(0)}}

    def __len__(self) -> int:
        return len(self.state)

    def __getitem__(self, i: int) -> dict:
        return {"observation.images.front": self.images[i], "observation.state": self.state[i],
                "action": self.actions[i].unsqueeze(0), "task": "push it left" if self.sign[i] > 0 else "push it right"}


def _batch(ds: Demos, n: int = 4) -> dict:
    return {"observation.images.front": ds.images[:n], "observation.state": ds.state[:n],
            "task": ["push it left" if s > 0 else "push it right" for s in ds.sign[:n]]}


def _predict(model: VLAModel, batch: dict) -> torch.Tensor:
    model.eval()
    return model.predict_action_chunk(batch)  # (B, 1, 2)


def _ft_config(**kw) -> FineTuningConfig:
    base = dict(use_lora=True, lora_r=8, lora_alpha=16, lora_dropout=0.0, learning_rate=3e-3, warmup_steps=0,
                lr_scheduler="constant", batch_size=16, max_steps=30, log_every=1, save_every=1000, device="cpu",
                weight_decay=0.0)
    base.update(kw)
    return FineTuningConfig(**base)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A base model saved before LoRA, then LoRA-fine-tuned for 30 steps with VLAFineTuner."""
    torch.manual_seed(0)
    ds = Demos()
    model = VLAModel(SMALL)
    model.set_normalization(ds.stats)
    base_dir = tmp_path_factory.mktemp("base")
    model.save_pretrained(base_dir)
    base_lm = {k: v.clone() for k, v in model.backbone.lm.state_dict().items()}
    result = VLAFineTuner(model, _ft_config(), progress=False).train(ds)
    return dict(model=model, ds=ds, base_dir=base_dir, base_lm=base_lm, result=result)


# ------------------------------------------------------------------------------------------------
def test_lora_trains_a_small_fraction_of_an_lm_heavy_model():
    """Trainable = the adapters (r * (in + out) per target layer) + the parts outside the LM."""
    for r in (4, 8):
        torch.manual_seed(0)
        model = VLAModel(dict(SMALL, llm_hidden_size=128, llm_num_heads=4, llm_intermediate_size=1024,
                              head_hidden_dim=16, head_num_layers=1), freeze_vision=True)
        total_before = model.num_parameters()
        outside_trainable = sum(p.numel() for n, p in model.named_parameters()
                                if p.requires_grad and not n.startswith("backbone."))
        model.add_lora(r=r, alpha=2 * r)
        adapters = 2 * len(TARGETS) * r * (128 + 128)  # 2 layers x q,k,v,o (128 -> 128 each)
        trainable, total = lora_parameter_stats(model)
        assert total == total_before + adapters
        assert trainable == outside_trainable + adapters
        assert all(("lora_" in n) == p.requires_grad for n, p in model.backbone.named_parameters())
        assert not any(p.requires_grad for p in model.vision_encoder.parameters())
        assert trainable / total == pytest.approx((outside_trainable + adapters) / (total_before + adapters))
        assert trainable / total <= 0.05, f"r={r}: {trainable / total:.3%}"
        assert model.lora_spec.r == r and model.lora_spec.alpha == 2 * r


def test_lora_lowers_loss_base_lm_frozen_adapters_change(trained):
    res, model = trained["result"], trained["model"]
    losses = [h["train/loss"] for h in res.history]
    assert res.step == 30 and sum(losses[-5:]) < 0.5 * sum(losses[:5]), losses
    after = model.backbone.lm.state_dict()
    for name, before in trained["base_lm"].items():  # peft keeps base weights under base_layer / same names
        key = name.replace(".weight", ".base_layer.weight").replace(".bias", ".base_layer.bias")
        peft_key = "base_model.model." + (key if any(t in name for t in TARGETS) else name)
        assert torch.equal(after[peft_key], before), f"base weight {name} changed"
    lora_a = [v for k, v in after.items() if "lora_A" in k]
    lora_b = [v for k, v in after.items() if "lora_B" in k]
    assert len(lora_a) == len(lora_b) == 2 * len(TARGETS)
    assert all(b.abs().max() > 0 for b in lora_b)  # B starts at zero: training moved it


def test_peft_adapter_round_trip_into_a_fresh_model(trained, tmp_path):
    import peft

    model, ds = trained["model"], trained["ds"]
    batch = _batch(ds)
    want = _predict(model, batch)
    save_adapter(model, tmp_path / "adapter")
    cfg = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA" and cfg["r"] == 8 and sorted(cfg["target_modules"]) == sorted(TARGETS)
    assert (tmp_path / "adapter" / "adapter_model.safetensors").exists()

    fresh = VLAModel.from_pretrained(trained["base_dir"])  # the base, before fine-tuning
    assert not torch.allclose(_predict(fresh, batch), want)
    load_adapter(fresh, tmp_path / "adapter")
    assert fresh.lora_spec.r == 8
    torch.testing.assert_close(_predict(fresh, batch), want, rtol=0, atol=1e-6)

    # peft's own reader accepts the folder on the bare base LM and gives the tuned LM's hidden states
    bare = VLAModel.from_pretrained(trained["base_dir"]).backbone
    bare.lm = peft.PeftModel.from_pretrained(bare.lm, str(tmp_path / "adapter"))
    x = torch.randn(2, 5, 64)  # (B, L, H)
    with torch.no_grad():
        torch.testing.assert_close(bare(inputs_embeds=x), model.backbone(inputs_embeds=x), rtol=0, atol=1e-6)


def test_merge_gives_same_outputs_and_plain_weight_names(trained, tmp_path):
    model, ds = copy.deepcopy(trained["model"]), trained["ds"]
    batch = _batch(ds)
    want = _predict(model, batch)
    model.merge_lora()
    assert model.lora_spec is None
    keys = list(model.state_dict())
    assert not any("lora_" in k or "base_layer" in k or "base_model" in k for k in keys)
    plain = set(VLAModel(SMALL).state_dict())
    assert set(keys) == plain
    torch.testing.assert_close(_predict(model, batch), want, rtol=0, atol=1e-5)
    model.save_pretrained(tmp_path / "merged")  # a plain checkpoint: loads without peft wrapping
    again = VLAModel.from_pretrained(tmp_path / "merged")
    torch.testing.assert_close(_predict(again, batch), want, rtol=0, atol=1e-5)


def test_lora_checkpoint_from_pretrained_identical(trained, tmp_path):
    model, ds = trained["model"], trained["ds"]
    batch = _batch(ds)
    model.save_pretrained(tmp_path / "ckpt")
    saved = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert saved["adapters"] == {"type": "lora", "r": 8, "alpha": 16, "dropout": 0.0, "target_modules": TARGETS,
                                 "scope": "lm"}
    assert not any(k.startswith(("lora_", "freeze_")) for k in saved)  # adapters are state, freezing is training's
    loaded = VLAModel.from_pretrained(tmp_path / "ckpt")  # strict load into the rebuilt LoRA structure
    assert torch.equal(_predict(loaded, batch), _predict(model, batch))
    assert all(("lora_" in n) == p.requires_grad for n, p in loaded.backbone.named_parameters())


def _assert_scope_round_trips(model: VLAModel, batch: dict, tmp_path, scope: str) -> None:
    """A tuned model with ``scope`` adapters (its base saved in tmp_path/base): the checkpoint, the adapter folder
    loaded into a fresh base, and the merged model all give the tuned model's predictions."""
    want = _predict(model, batch)
    model.save_pretrained(tmp_path / "ckpt")
    assert json.loads((tmp_path / "ckpt" / "config.json").read_text())["adapters"]["scope"] == scope
    torch.testing.assert_close(_predict(VLAModel.from_pretrained(tmp_path / "ckpt"), batch), want, rtol=0, atol=0)
    save_adapter(model, tmp_path / "adapter")
    fresh = VLAModel.from_pretrained(tmp_path / "base")
    load_adapter(fresh, tmp_path / "adapter")
    assert fresh.lora_spec.scope == scope
    torch.testing.assert_close(_predict(fresh, batch), want, rtol=0, atol=1e-6)
    model.merge_lora()
    assert not any("lora_" in k or "base_layer" in k for k in model.state_dict())
    torch.testing.assert_close(_predict(model, batch), want, rtol=0, atol=1e-5)


def test_policy_scope_adapts_projector_film_and_head_too(tmp_path):
    """lora_scope=policy: adapters on every linear layer of the projector / FiLM / head where an adapter is
    smaller than the layer; their base weights freeze; training lowers the loss; checkpoint, adapter folder and
    merge all reproduce the tuned model."""
    torch.manual_seed(0)
    ds = Demos()
    model = VLAModel(dict(SMALL, film=True, vision_dim=32, head_hidden_dim=64))
    model.set_normalization(ds.stats)
    model.save_pretrained(tmp_path / "base")
    lm_only = copy.deepcopy(model).add_lora(r=4, alpha=8)
    res = VLAFineTuner(model, _ft_config(lora_r=4, lora_alpha=8, lora_scope="policy", freeze_vision=True),
                       progress=False).train(ds)
    assert model.lora_spec.scope == "policy"
    losses = [h["train/loss"] for h in res.history]
    assert sum(losses[-5:]) < 0.7 * sum(losses[:5]), losses
    trainable, total = lora_parameter_stats(model)
    assert trainable < lora_parameter_stats(lm_only)[0]
    named = dict(model.named_parameters())
    # projector 32 -> 64 -> 64, FiLM 64 -> 64, head 64 -> 64 adapted; head's 64 -> 2 output trains in full
    for layer in ("projector.net.0", "projector.net.2", "film", "action_head.net.0"):
        assert not named[f"{layer}.base_layer.weight"].requires_grad, layer
        assert named[f"{layer}.lora_A.default.weight"].requires_grad, layer
        assert named[f"{layer}.lora_B.default.weight"].abs().max() > 0, layer  # B starts at zero: it trained
    assert named["action_head.net.2.weight"].requires_grad and "action_head.net.2.base_layer.weight" not in named
    assert not any(p.requires_grad for p in model.vision_encoder.parameters())

    _assert_scope_round_trips(model, _batch(ds), tmp_path, "policy")


def test_all_scope_adapts_the_vision_encoder_convs_too(tmp_path):
    """lora_scope=all: the CNN's conv layers get peft's conv adapters (base frozen; norms and position
    embedding train); the trainable count stays below the policy scope with a fully trained encoder; training
    moves the vision adapters; checkpoint, adapter folder and merge reproduce the tuned model."""
    torch.manual_seed(0)
    ds = Demos()
    model = VLAModel(dict(SMALL, film=True, vision_dim=32, head_hidden_dim=64))
    model.set_normalization(ds.stats)
    model.save_pretrained(tmp_path / "base")
    policy = copy.deepcopy(model).add_lora(r=4, alpha=8, scope="policy")  # vision encoder trains in full
    res = VLAFineTuner(model, _ft_config(lora_r=4, lora_alpha=8, lora_scope="all"), progress=False).train(ds)
    assert model.lora_spec.scope == "all"
    losses = [h["train/loss"] for h in res.history]
    assert sum(losses[-5:]) < 0.7 * sum(losses[:5]), losses
    assert lora_parameter_stats(model)[0] < lora_parameter_stats(policy)[0]
    named = dict(model.named_parameters())
    convs = [n for n, m in model.vision_encoder.named_modules() if type(m) is torch.nn.Conv2d and ".base_layer" in "." + n]
    assert len(convs) >= 3, convs  # the conv layers wider than 4 channels were adapted
    for c in convs:
        layer = "vision_encoder." + c.rsplit(".base_layer", 1)[0]
        assert not named[f"{layer}.base_layer.weight"].requires_grad, layer
        assert named[f"{layer}.lora_B.default.weight"].abs().max() > 0, layer  # B starts at zero: it trained
    assert named["vision_encoder.pos_embed"].requires_grad

    _assert_scope_round_trips(model, _batch(ds), tmp_path, "all")


def test_unknown_lora_scope_is_a_one_line_error():
    with pytest.raises(LoRAError, match="scope 'everything' is unknown; choose from: lm, policy, all"):
        VLAModel(SMALL).add_lora(r=4, scope="everything")
    with pytest.raises(Exception, match="lora_scope"):
        FineTuningConfig(lora_scope="everything").validate()


def test_gradient_checkpointing_with_lora_same_gradients(monkeypatch):
    import transformers.modeling_utils as mu

    torch.manual_seed(0)
    ds = Demos(8)
    batch = {**_batch(ds, 8), "action": ds.actions[:8].unsqueeze(1)}
    model = VLAModel(SMALL, freeze_vlm=True)  # the memory-efficient preset's shape: VLM frozen + LoRA
    model.set_normalization(ds.stats)
    model.add_lora(r=4, alpha=8, dropout=0.0)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)  # B = 0 would make A's gradient zero

    def grads() -> dict[str, torch.Tensor]:
        model.zero_grad(set_to_none=True)
        model.train()
        loss, _ = model(batch)
        loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if "lora_" in n}

    plain = grads()
    calls = []
    real = mu.checkpoint

    def counting(*a, **kw):
        calls.append(kw.get("use_reentrant"))
        return real(*a, **kw)

    monkeypatch.setattr(mu, "checkpoint", counting)
    model.gradient_checkpointing_enable()
    assert model.backbone.lm.is_gradient_checkpointing
    ckpt = grads()
    assert model.backbone.training  # a frozen VLM with LoRA stays in train mode, so checkpointing is on
    assert calls and set(calls) == {False}, calls  # each decoder layer recomputed, non-reentrant
    assert len(plain) == 2 * 2 * len(TARGETS)
    for n, g in plain.items():
        assert g.abs().max() > 0, n
        torch.testing.assert_close(ckpt[n], g, rtol=1e-4, atol=1e-6)


def test_finetuner_lora_gradient_checkpointing_runs_and_checkpoints(tmp_path):
    torch.manual_seed(0)
    ds = Demos(32)
    model = VLAModel(SMALL)
    cfg = _ft_config(max_steps=3, batch_size=8, gradient_checkpointing=True, freeze_vision=True, lora_r=4,
                     lora_dropout=0.05, save_every=3)
    res = VLAFineTuner(model, cfg, run_dir=tmp_path / "run", progress=False).train(ds)
    assert res.state == "done" and res.step == 3 and res.checkpoint is not None
    assert model.lora_spec.r == 4
    assert model.backbone.lm.is_gradient_checkpointing
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "LoRA r=4" in log and "parameters trainable" in log
    loaded = VLAModel.from_pretrained(res.checkpoint)
    batch = _batch(ds)
    assert torch.equal(_predict(loaded, batch), _predict(model, batch))
    # resume (what `vla resume` does): a fresh model gets the adapters first, then the checkpoint loads strictly
    again = VLAFineTuner(VLAModel(SMALL), cfg.replace(max_steps=4), run_dir=tmp_path / "run", progress=False).train(ds)
    assert again.state == "done" and again.step == 4
    assert "resumed from step-3" in (tmp_path / "run" / "log.txt").read_text()


def test_unknown_target_module_is_a_one_line_error():
    model = VLAModel(SMALL)
    names = lm_linear_names(model.backbone.lm)
    assert {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"} <= set(names)
    with pytest.raises(LoRAError) as e:
        VLAFineTuner(model, _ft_config(lora_target_modules=["q_proj", "qkv"]), progress=False).train(Demos(8))
    msg = str(e.value)
    assert "\n" not in msg and "'qkv'" in msg and "q_proj" in msg and "down_proj" in msg
    assert model.lora_spec is None  # nothing was half-applied
    with pytest.raises(LoRAError, match="no LoRA adapters to merge"):
        model.merge_lora()


def test_adapter_record_validates():
    """The adapters are model state (``LoRASpec``), not model-config fields; a bad record is a one-line error."""
    from vla_engine.config.base import ConfigError
    from vla_engine.config.model_config import ModelConfig
    from vla_engine.models import LoRASpec

    with pytest.raises(ConfigError, match="adapters.r"):
        LoRASpec(r=-1)
    with pytest.raises(ConfigError, match="adapters.dropout"):
        LoRASpec(r=8, dropout=1.0)
    with pytest.raises(ConfigError, match="adapters.target_modules"):
        LoRASpec(r=8, target_modules=())
    with pytest.raises(ConfigError, match="adapters.scope"):
        LoRASpec.from_dict({"r": 8, "scope": "everything"})
    assert list(LoRASpec(r=8).target_modules) == TARGETS
    assert not any(f.startswith(("lora_", "freeze_")) for f in ModelConfig.field_names())
