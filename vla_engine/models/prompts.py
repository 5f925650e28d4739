"""The language model's input sequence, one builder per ``model.prompt_format``.

Each builder takes the VLA (its tokenizer, text cache, backbone embeddings and ``encode_modalities``) and a
batch and returns ``(embeddings (B, N, H), attention mask or None, position ids (B, N) or None)``:

* ``plain``: ``[instruction, observation tokens, learned action query]``, read at the query (the last token);
  text padding masked out, positions not shifted by it.
* ``openvla``: OpenVLA's ``[BOS, observation tokens, "In: What action should the robot take to {task}?\\nOut:",
  empty token]``, the prompt left-padded so every row ends at its last prompt token.
* ``smolvla``: SmolVLA's prefix ``[image tokens * sqrt(H), instruction + "\\n" * sqrt(H), state token]`` with a
  (B, N, N) block mask, read layer by layer by the ``smolvla-expert`` head.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch
from torch import nn

from .inputs import batch_size, batch_tasks

__all__ = ["OPENVLA_PROMPT", "PROMPT_FORMATS", "empty_token_id", "input_sequence", "plain_sequence",
           "openvla_sequence", "smolvla_sequence"]

Sequence = tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]

OPENVLA_PROMPT = "In: What action should the robot take to {task}?\nOut:"


def empty_token_id(tokenizer: Any) -> int | None:
    """The SentencePiece word-start token alone ("\u2581", id 29871 in Llama 2), which OpenVLA appends to its
    prompt; None when the tokenizer has no such token."""
    try:
        i = tokenizer.convert_tokens_to_ids("\u2581")
    except Exception:  # noqa: BLE001 - a tokenizer without a vocabulary lookup
        return None
    if i is None or i == getattr(tokenizer, "unk_token_id", None):
        return None
    return int(i)


def plain_sequence(model: nn.Module, batch: Mapping[str, Any]) -> Sequence:
    """``[text, observation tokens, action query]`` embeddings (B, N, H), with the attention mask and position
    ids (both None when no instruction is padded)."""
    b = batch_size(batch, model.config.image_keys[0])
    tasks = batch_tasks(batch, b)
    ids, text_mask = model.text_cache(tasks)  # (B, L), (B, L)
    ids, text_mask = ids.to(model.device, non_blocking=True), text_mask.to(model.device, non_blocking=True)
    text = model.backbone.embed(ids)  # (B, L, H)
    summary = None
    if model.film is not None:  # the instruction alone through the LM, mean-pooled: (B, H)
        # each distinct instruction once (a multi-task batch repeats a few), then gathered back per sample
        first: dict[str, int] = {}
        inverse = torch.tensor([first.setdefault(t, len(first)) for t in tasks], device=model.device)  # (B,)
        rows = torch.tensor([tasks.index(t) for t in first], device=model.device)  # (U,)
        t_u, mask_u = text[rows], text_mask[rows]  # (U, L, H), (U, L)
        m = mask_u.unsqueeze(-1).to(text.dtype)  # (U, L, 1)
        h = model.backbone(inputs_embeds=t_u, attention_mask=None if bool(mask_u.all()) else mask_u.long())
        summary = ((h * m).sum(1) / m.sum(1).clamp_min(1.0))[inverse]  # (U, H) -> (B, H)
    tokens = model.encode_modalities(batch, summary)
    prefix = torch.cat(list(tokens.values()), dim=1)  # (B, P, H)
    text = text.to(prefix.dtype)  # (B, L, H)
    query = model.action_query.expand(b, -1, -1).to(prefix.dtype)  # (B, 1, H)
    # The instruction comes first: in a causal LM every observation token can then attend to it,
    # so visual features are conditioned on the words (which block?) from the first layer on.
    seq = torch.cat([text, prefix, query], dim=1)  # (B, L + P + 1, H)
    if bool(text_mask.all()):
        return seq, None, None  # no padding: plain causal attention
    ones = torch.ones(b, prefix.shape[1] + 1, dtype=torch.long, device=model.device)  # (B, P + 1)
    attn = torch.cat([text_mask.long(), ones], dim=1)  # (B, L + P + 1)
    pos = (attn.cumsum(dim=1) - 1).clamp_min(0)  # (B, L + P + 1): padding does not shift positions
    return seq, attn, pos


def smolvla_sequence(model: nn.Module, batch: Mapping[str, Any]) -> Sequence:
    """SmolVLA's prefix: ``[image tokens * sqrt(H), instruction tokens * sqrt(H), state token]`` (B, N, H),
    its (B, N, N) bool attention mask (images and words attend to each other, padding out; the state token
    attends to them all, they not to it) and positions (B, N) (cumsum of the valid tokens - 1). The
    instruction gets a trailing newline and is tokenised as LeRobot's tokenizer step does (the tokenizer's
    special tokens, right padding, at most max_text_tokens)."""
    b = batch_size(batch, model.config.image_keys[0])
    device = model.device
    rows = []
    cache = model.__dict__.setdefault("_smolvla_ids", {})  # instruction -> token ids
    for task in batch_tasks(batch, b):
        text = task if task.endswith("\n") else task + "\n"
        ids = cache.get(text)
        if ids is None:
            ids = list(model.tokenizer(text, truncation=True, max_length=model.config.max_text_tokens)["input_ids"])
            if len(cache) >= 50_000:
                cache.clear()
            cache[text] = ids
        rows.append(ids)
    length = max(len(r) for r in rows)
    pad = model.text_cache.pad_id
    ids = torch.tensor([r + [pad] * (length - len(r)) for r in rows], dtype=torch.long, device=device)
    text_valid = torch.tensor([[True] * len(r) + [False] * (length - len(r)) for r in rows], device=device)
    tokens = model.encode_modalities(batch)
    images = tokens.pop("images")  # (B, Ni, H)
    state = tokens.pop("state", None)  # (B, 1, H)
    hidden = images.shape[-1]
    scale = float(hidden) ** 0.5
    text = model.backbone.embed(ids).to(images.dtype) * scale  # (B, L, H)
    parts = [images * torch.tensor(scale, dtype=images.dtype, device=images.device)]
    parts += list(tokens.values())  # added modalities: with the images
    n_obs = sum(p.shape[1] for p in parts)
    parts.append(text)
    if state is not None:
        parts.append(state)
    seq = torch.cat(parts, dim=1)  # (B, N, H)
    n_state = state.shape[1] if state is not None else 0
    valid = torch.cat([torch.ones(b, n_obs, dtype=torch.bool, device=device), text_valid,
                       torch.ones(b, n_state, dtype=torch.bool, device=device)], dim=1)  # (B, N)
    block = torch.zeros(seq.shape[1], dtype=torch.long, device=device)
    block[seq.shape[1] - n_state:] = 1  # the state token starts a block the others cannot see
    block = block.cumsum(0)  # (N,)
    mask = (block[None, :] <= block[:, None])[None] & valid[:, None, :] & valid[:, :, None]  # (B, N, N)
    pos = valid.long().cumsum(dim=1) - 1  # (B, N)
    return seq, mask, pos


def openvla_sequence(model: nn.Module, batch: Mapping[str, Any]) -> Sequence:
    """OpenVLA's input: ``[BOS, observation tokens, prompt tokens, empty token]`` (B, N, H). Prompts of
    different lengths are left-padded after the observation tokens (masked out, positions not shifted), so
    every row ends at its own last prompt token, where the actions are read."""
    b = batch_size(batch, model.config.image_keys[0])
    device = model.device
    end_id = model._prompt_end_id  # empty_token_id(tokenizer), found when the model was built
    rows = []
    for task in batch_tasks(batch, b):
        ids = list(model.text_cache.encode(OPENVLA_PROMPT.format(task=task.lower())))  # BOS first if any
        if end_id is not None and (not ids or ids[-1] != end_id):
            ids.append(end_id)  # OpenVLA's predict_action appends it (29871 for Llama 2)
        rows.append(ids)
    bos = model.text_cache.bos_id
    has_bos = bos is not None and all(r and r[0] == bos for r in rows)
    texts = [r[1:] if has_bos else r for r in rows]
    length = max(len(t) for t in texts)
    pad = model.text_cache.pad_id
    ids = torch.tensor([[pad] * (length - len(t)) + t for t in texts], dtype=torch.long, device=device)
    text_mask = torch.tensor([[0] * (length - len(t)) + [1] * len(t) for t in texts], dtype=torch.long,
                             device=device)  # (B, L) left-padded
    tokens = model.encode_modalities(batch)
    prefix = torch.cat(list(tokens.values()), dim=1)  # (B, P, H)
    parts = [model.backbone.embed(ids[:, :1].new_full((b, 1), bos)).to(prefix.dtype)] if has_bos else []
    seq = torch.cat(parts + [prefix, model.backbone.embed(ids).to(prefix.dtype)], dim=1)  # (B, [1] + P + L, H)
    if bool(text_mask.all()):
        return seq, None, None  # no padding: plain causal attention
    ones = torch.ones(b, seq.shape[1] - length, dtype=torch.long, device=device)  # (B, [1] + P)
    attn = torch.cat([ones, text_mask], dim=1)  # (B, N)
    pos = (attn.cumsum(dim=1) - 1).clamp_min(0)  # (B, N): padding does not shift positions
    return seq, attn, pos


PROMPT_FORMATS: dict[str, Callable[[nn.Module, Mapping[str, Any]], Sequence]] = {
    "plain": plain_sequence, "openvla": openvla_sequence, "smolvla": smolvla_sequence}


def input_sequence(model: nn.Module, batch: Mapping[str, Any]) -> Sequence:
    """The LM's input for ``model.config.prompt_format``."""
    return PROMPT_FORMATS[model.config.prompt_format](model, batch)
