"""Action tokens through the LM's vocabulary (OpenVLA-style), the flow-matching expert (SmolVLA-style)
and ACT temporal ensembling: they learn, save and load, and fail clearly."""

from __future__ import annotations

import math

import pytest
import torch

from vla_engine.models import VLAModel, create_vla_model
from vla_engine.models.action_tokens import ActionTokenHead, ActionTokenizer
from vla_engine.models.ensemble import TemporalEnsembler
from vla_engine.models.flow_head import FlowMatchingActionHead
from vla_engine.models.heads import HeadError

from .toy_training import UNIT_STATS as UNIT, fit_batch as _fit, vla_batch as _batch


def test_action_tokenizer_round_trip_and_bins():
    tok = ActionTokenizer(256, -1.0, 1.0)
    a = torch.linspace(-1, 1, 101)
    bins = tok.encode(a)
    assert int(bins.min()) == 0 and int(bins.max()) == 255
    assert (tok.decode(bins) - a).abs().max() <= tok.width / 2 + 1e-6  # error at most half a bin
    assert int(tok.encode(torch.tensor(5.0))) == 255  # out of range: clipped to the last bin
    with pytest.raises(HeadError, match="n_bins"):
        ActionTokenizer(1)


def test_action_tokens_learn_through_the_lm_vocabulary_and_round_trip(tmp_path):
    torch.manual_seed(0)
    model = create_vla_model("tiny", action_head="tokens", action_dim=2, state_dim=2, chunk_size=2,
                             n_action_steps=2, image_size=32, action_bins=16)
    head = model.action_head
    assert isinstance(head, ActionTokenHead) and head.token_offset == len(model.tokenizer)
    # the bins are rows of the LM's own (tied) embedding matrix, appended after the words
    assert model.backbone.lm.get_input_embeddings().weight.shape[0] >= len(model.tokenizer) + 16
    model.set_normalization({"action": UNIT, "observation.state": UNIT})
    batch = _batch(chunk=2)
    first, last = _fit(model, batch, 120)
    assert last < 0.25 * first, (first, last)
    model.eval()
    pred = model.predict_action_chunk(batch)  # (B, 2, 2)
    assert pred.shape == (8, 2, 2)
    # decoded bins sit within one bin of the demonstrated actions on this memorised batch
    assert (pred - batch["action"]).abs().max() <= 2 * head.tokenizer.width
    model.save_pretrained(tmp_path / "ckpt")
    again = VLAModel.from_pretrained(tmp_path / "ckpt")
    assert torch.equal(again.predict_action_chunk(batch), pred)
    with pytest.raises(HeadError, match="inside a VLAModel"):
        ActionTokenHead(action_dim=2, input_dim=8).predict(torch.zeros(1, 8))


@pytest.mark.parametrize("mode", ["freeze_vlm", "lora"])
def test_action_tokens_train_with_a_frozen_or_lora_lm(mode):
    """The appended bin rows start random; with the LM frozen or LoRA-adapted they still learn (the head's
    deltas), while the LM's own embedding matrix stays untouched."""
    torch.manual_seed(0)
    model = create_vla_model("tiny", action_head="tokens", action_dim=2, state_dim=2, chunk_size=2,
                             n_action_steps=2, image_size=32, action_bins=16, freeze_vlm=(mode == "freeze_vlm"))
    if mode == "lora":
        model.add_lora(r=4, alpha=8)
    model.set_normalization({"action": UNIT, "observation.state": UNIT})
    emb = model.backbone.lm.get_input_embeddings().weight
    assert not emb.requires_grad and model.action_head.embed_delta.requires_grad
    before = emb.detach().clone()
    first, last = _fit(model, _batch(chunk=2), 120)
    assert last < 0.5 * first, (first, last)
    assert torch.equal(model.backbone.lm.get_input_embeddings().weight, before)
    assert model.action_head.logit_delta.abs().sum() > 0


def test_flow_head_learns_and_round_trips(tmp_path):
    torch.manual_seed(0)
    model = create_vla_model("tiny", action_head="flow", action_dim=2, state_dim=2, chunk_size=4, n_action_steps=4,
                             image_size=32, head_hidden_dim=64)
    assert isinstance(model.action_head, FlowMatchingActionHead) and model.action_head.uses_context
    model.set_normalization({"action": UNIT, "observation.state": UNIT})
    batch = _batch(chunk=4)
    first, last = _fit(model, batch, 200)
    assert last < 0.6 * first, (first, last)
    model.eval()
    torch.manual_seed(1)
    pred = model.predict_action_chunk(batch)
    assert pred.shape == (8, 4, 2) and torch.isfinite(pred).all()
    model.save_pretrained(tmp_path / "ckpt")
    again = VLAModel.from_pretrained(tmp_path / "ckpt")
    torch.manual_seed(1)
    assert torch.allclose(again.predict_action_chunk(batch), pred, atol=1e-5)
    with pytest.raises(HeadError, match="divisible"):
        FlowMatchingActionHead(hidden_dim=30, num_heads=4)


def test_flow_sampling_reaches_a_fixed_target():
    """With one target for every input, integrating the learned velocity lands on it."""
    torch.manual_seed(0)
    head = FlowMatchingActionHead(action_dim=2, chunk_size=2, hidden_dim=32, num_layers=1, input_dim=4)
    target = torch.tensor([[[0.5, -0.5], [0.2, 0.1]]]).expand(64, -1, -1)
    feats = torch.zeros(64, 4)
    opt = torch.optim.Adam(head.parameters(), 3e-3)
    for _ in range(400):
        loss, _ = head.compute_loss(feats, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    out = head.sample(feats[:8], num_steps=10)
    assert (out - target[:8]).abs().mean() < 0.15


def test_temporal_ensembler_weights_like_act():
    ens = TemporalEnsembler(0.01, 3)
    assert torch.allclose(ens.update(torch.ones(1, 3, 1)), torch.tensor([[1.0]]))
    a2 = ens.update(torch.full((1, 3, 1), 2.0))
    w0, w1 = 1.0, math.exp(-0.01)  # oldest prediction weighs exp(0), the next exp(-0.01)
    assert torch.allclose(a2, torch.tensor([[(w0 * 1 + w1 * 2) / (w0 + w1)]]))
    ens.reset()
    assert torch.allclose(ens.update(torch.full((1, 3, 1), 5.0)), torch.tensor([[5.0]]))
    with pytest.raises(ValueError, match="chunks of 3"):
        ens.update(torch.zeros(1, 4, 1))
