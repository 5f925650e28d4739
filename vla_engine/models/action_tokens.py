"""OpenVLA-style discrete action tokens: each action dimension is cut into ``n_bins`` uniform bins
and every bin is a token of the language model's own vocabulary; the LM predicts the action chunk
token by token with its LM head, exactly as it would predict words.

OpenVLA (Kim et al. 2024) overwrites the 256 least-used ids of the Llama tokenizer; here the bins
are *appended* to the vocabulary (``resize_token_embeddings``), which keeps every word usable and
works for any tokenizer (the byte-level one included). Token ``offset + b`` means bin ``b``.

Sequence (teacher forcing in training, greedy decoding at inference)::

    [text, observation tokens, action query] [a_0, a_1, ..., a_{n-2}]      n = chunk_size * action_dim
       the hidden state at the query predicts a_0, at a_i predicts a_{i+1}

Actions arrive normalised (the model's normaliser); bins span ``[-action_range, action_range]``
(1 for min_max normalisation, 3 standard deviations for mean_std); values outside are clipped.

``vocab_tail=True`` (``model.head.token_ids: vocab_tail``) is OpenVLA's own scheme, the one its published
checkpoints were trained with: the bins are the last ``n_bins`` ids of the tokenizer's vocabulary
(``tokenizer.vocab_size``, added tokens excluded), bin edges ``linspace(-1, 1, n_bins)`` (so n_bins - 1
bins), bin ``d`` is token ``vocab_size - 1 - d``; decoding is greedy over the *whole* vocabulary and a
token ``t`` reads as bin ``clip(vocab_size - 1 - t, 0, n_bins - 2)``, exactly as OpenVLA's
``predict_action``; the training loss is the cross-entropy over the whole vocabulary, as in its fine-tuning.

The bins' rows of the LM's input and output embeddings are the LM's rows plus two deltas the head
owns (``embed_delta``, ``logit_delta``; zero at the start). So the action tokens keep learning when
the LM itself is frozen (``freeze_vlm``) or LoRA-adapted, the way peft's ``trainable_token_indices``
trains chosen rows only: without them the appended rows would stay at their random initialisation.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .configuration_heads import TokenHeadConfig
from .heads import ActionHead, HeadError


class ActionTokenizer:
    """Continuous (…, A) actions <-> bin indices (…, A) in ``[0, n_bins)``, uniform over ``[low, high]``."""

    def __init__(self, n_bins: int = 256, low: float = -1.0, high: float = 1.0):
        if n_bins < 2:
            raise HeadError(f"action tokens need n_bins >= 2, got {n_bins}")
        if not high > low:
            raise HeadError(f"action token range must have high > low, got [{low}, {high}]")
        self.n_bins, self.low, self.high = int(n_bins), float(low), float(high)
        self.width = (self.high - self.low) / self.n_bins

    def encode(self, actions: torch.Tensor) -> torch.Tensor:
        """(…, A) float -> (…, A) long bin indices."""
        x = (actions.float().clamp(self.low, self.high) - self.low) / self.width  # (…, A) in [0, n_bins]
        return x.floor().long().clamp(0, self.n_bins - 1)

    def decode(self, bins: torch.Tensor) -> torch.Tensor:
        """(…, A) bin indices -> (…, A) bin centres."""
        return self.low + (bins.float() + 0.5) * self.width


class ActionTokenHead(ActionHead):
    """Predicts an action chunk as ``chunk_size * action_dim`` tokens through the LM (see module doc).

    Works only inside a ``VLAModel`` (it needs the language model): the model calls
    ``attach_backbone`` when it is built, ``compute_loss_lm`` in training and ``predict_lm`` at
    inference.
    """

    name = "tokens"
    config_class = TokenHeadConfig
    capabilities = TokenHeadConfig.capabilities

    def __init__(self, action_dim: int = 7, chunk_size: int = 1, n_bins: int = 256, action_range: float = 1.0,
                 input_dim: int | None = None, vocab_tail: bool = False):
        if action_range <= 0:
            raise HeadError(f"ActionTokenHead action_range must be > 0, got {action_range}")
        if vocab_tail and n_bins < 3:
            raise HeadError(f"vocab-tail action tokens need n_bins >= 3 (bin edges), got {n_bins}")
        self.n_bins, self.action_range, self.vocab_tail = int(n_bins), float(action_range), bool(vocab_tail)
        # vocab tail (OpenVLA): n_bins edges, n_bins - 1 bins; appended: one bin per token
        self.tokenizer = ActionTokenizer(n_bins - 1 if vocab_tail else n_bins, -action_range, action_range)
        self.token_offset: int | None = None
        super().__init__(action_dim, chunk_size, input_dim)
        self.last_tokens: torch.Tensor | None = None  # (B, n) token ids of the latest predict_lm

    def _build(self, input_dim: int) -> None:
        # trainable offsets of the bins' embedding rows (see module doc); the LM's rows do the rest
        self.embed_delta = nn.Parameter(torch.zeros(self.n_bins, input_dim))  # (K, H) added to input rows
        self.logit_delta = nn.Parameter(torch.zeros(self.n_bins, input_dim))  # (K, H) added to LM-head rows

    @classmethod
    def from_config(cls, cfg: Any, input_dim: int | None = None) -> "ActionTokenHead":
        rng = 1.0 if cfg.normalization == "min_max" else 3.0
        return cls(action_dim=cfg.action_dim, chunk_size=cfg.chunk_size, n_bins=cfg.head.bins, action_range=rng,
                   input_dim=input_dim, vocab_tail=cfg.head.token_ids == "vocab_tail")

    def head_settings(self) -> dict[str, Any]:
        return {"bins": self.n_bins, "token_ids": "vocab_tail" if self.vocab_tail else "append"}

    # -- the LM ----------------------------------------------------------------------------------
    def attach_backbone(self, backbone: nn.Module, tokenizer: Any) -> None:
        """Reserve ``n_bins`` token ids after the tokenizer's vocabulary (growing the LM if needed), or with
        ``vocab_tail`` take the last ``n_bins`` ids of its own vocabulary (``tokenizer.vocab_size``, no added ids).
        ``tokenizer`` may also be the base vocabulary size itself."""
        if isinstance(tokenizer, int):
            base_vocab = tokenizer
        else:
            base_vocab = int(tokenizer.vocab_size) if self.vocab_tail else len(tokenizer)
        lm = backbone.lm
        if lm.get_output_embeddings() is None:
            raise HeadError(f"action tokens need a language model with an LM head; {type(lm).__name__} has none")
        if self.vocab_tail:
            rows = lm.get_input_embeddings().weight.shape[0]
            if not self.n_bins <= base_vocab <= rows:
                raise HeadError(f"vocab-tail action tokens need a vocabulary of at least {self.n_bins} ids within the "
                                f"LM's {rows} embedding rows; the tokenizer has {base_vocab}: use action_token_ids: append")
            self.token_offset = int(base_vocab)  # bin d is token base_vocab - 1 - d
            return
        need = base_vocab + self.n_bins
        if lm.get_input_embeddings().weight.shape[0] < need:
            lm.resize_token_embeddings(need, mean_resizing=False)
        self.token_offset = int(base_vocab)

    def _logits(self, backbone: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        """LM-head logits restricted to the action bins: (B, n, H) -> (B, n, n_bins); with ``vocab_tail`` the
        whole vocabulary's logits (B, n, V), the tail's rows with the head's delta."""
        if self.vocab_tail:
            logits = backbone.lm.get_output_embeddings()(hidden)  # (B, n, V)
            lo, hi = self.token_offset - self.n_bins, self.token_offset  # the tail, in ascending ids
            tail = logits[..., lo:hi] + F.linear(hidden, self.logit_delta.flip(0).to(hidden.dtype))  # (B, n, K)
            return torch.cat([logits[..., :lo], tail, logits[..., hi:]], dim=-1)  # (B, n, V)
        w = backbone.lm.get_output_embeddings().weight[self.token_offset:self.token_offset + self.n_bins]  # (K, H)
        return F.linear(hidden, w + self.logit_delta.to(w.dtype))  # (B, n, K)

    def _to_tokens(self, bins: torch.Tensor) -> torch.Tensor:
        """(…) bin indices -> (…) token ids."""
        return self.token_offset - 1 - bins if self.vocab_tail else bins + self.token_offset

    def _to_bins(self, tokens: torch.Tensor) -> torch.Tensor:
        """(…) vocab-tail token ids -> (…) bin indices, as OpenVLA reads them: clip(V - 1 - t, 0, n_bins - 2)."""
        return (self.token_offset - 1 - tokens).clamp(0, self.n_bins - 2)

    def _embed_bins(self, backbone: nn.Module, bins: torch.Tensor) -> torch.Tensor:
        """(B, k) bin indices -> (B, k, H) input embeddings of their tokens."""
        emb = backbone.embed(self._to_tokens(bins))  # (B, k, H) the LM's rows
        return emb + self.embed_delta[bins].to(emb.dtype)

    def _embed_tokens(self, backbone: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
        """(B, k) any token ids (vocab tail) -> (B, k, H): the LM's rows, plus the head's delta for action tokens."""
        emb = backbone.embed(tokens)  # (B, k, H)
        rows = self.token_offset - 1 - tokens  # (B, k) delta row of an action token
        inside = ((rows >= 0) & (rows < self.n_bins)).unsqueeze(-1).to(emb.dtype)  # (B, k, 1)
        return emb + self.embed_delta[rows.clamp(0, self.n_bins - 1)].to(emb.dtype) * inside

    def _run(self, backbone: nn.Module, seq: torch.Tensor, attn: torch.Tensor | None,
             pos: torch.Tensor | None) -> torch.Tensor:
        if attn is not None:
            pos = (attn.cumsum(dim=1) - 1).clamp_min(0)  # (B, N)
        return backbone(inputs_embeds=seq, attention_mask=attn, position_ids=pos)  # (B, N, H)

    @staticmethod
    def _extend(seq: torch.Tensor, attn: torch.Tensor | None, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        seq = torch.cat([seq, emb.to(seq.dtype)], dim=1)  # (B, N + k, H)
        if attn is not None:
            attn = torch.cat([attn, attn.new_ones(attn.shape[0], emb.shape[1])], dim=1)  # (B, N + k)
        return seq, attn

    def _check_attached(self) -> None:
        if self.token_offset is None:
            raise HeadError("ActionTokenHead is not attached to a language model; use it inside a VLAModel "
                            "(action_head='tokens')")

    def compute_loss_lm(self, backbone: nn.Module, seq: torch.Tensor, attn: torch.Tensor | None,
                        pos: torch.Tensor | None, actions: torch.Tensor,
                        action_is_pad: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """Next-token cross-entropy over the action tokens (teacher forcing). actions: (B, chunk, A) normalised."""
        self._check_attached()
        b, c, a = actions.shape
        bins = self.tokenizer.encode(actions).view(b, c * a)  # (B, n)
        emb = self._embed_bins(backbone, bins[:, :-1])  # (B, n - 1, H): a_0 .. a_{n-2} as inputs
        seq, attn = self._extend(seq, attn, emb)  # (B, N + n - 1, H)
        hidden = self._run(backbone, seq, attn, pos)[:, -(c * a):]  # (B, n, H): query, a_0 .. a_{n-2}
        logits = self._logits(backbone, hidden)  # (B, n, K) or (B, n, V) with vocab_tail
        classes = self._to_tokens(bins) if self.vocab_tail else bins  # (B, n) targets among the logits
        target = classes.clone()  # (B, n)
        if action_is_pad is not None:
            target = target.masked_fill(action_is_pad.bool().repeat_interleave(a, dim=1), -100)  # (B, n)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), target.reshape(-1), ignore_index=-100)
        with torch.no_grad():
            valid = target >= 0
            pred = logits.argmax(-1)  # (B, n)
            acc = (pred == classes)[valid].float().mean() if bool(valid.any()) else torch.tensor(0.0)
            pred_bins = self._to_bins(pred) if self.vocab_tail else pred  # (B, n)
            l1 = (self.tokenizer.decode(pred_bins) - actions.reshape(b, -1).float()).abs()[valid].mean() \
                if bool(valid.any()) else torch.tensor(0.0)
        return loss, {"action_token_accuracy": float(acc), "action_l1": float(l1)}

    @torch.no_grad()
    def predict_lm(self, backbone: nn.Module, seq: torch.Tensor, attn: torch.Tensor | None,
                   pos: torch.Tensor | None) -> torch.Tensor:
        """Greedy decoding of ``chunk_size * action_dim`` tokens -> (B, chunk, A) normalised bin centres."""
        self._check_attached()
        b, n = seq.shape[0], self.chunk_size * self.action_dim
        out: list[torch.Tensor] = []
        for _ in range(n):
            hidden = self._run(backbone, seq, attn, pos)[:, -1:]  # (B, 1, H)
            nxt = self._logits(backbone, hidden).argmax(-1)  # (B, 1) bin, or token id with vocab_tail
            out.append(nxt)
            emb = self._embed_tokens(backbone, nxt) if self.vocab_tail else self._embed_bins(backbone, nxt)
            seq, attn = self._extend(seq, attn, emb)  # (B, N + 1, H)
        picked = torch.cat(out, dim=1)  # (B, n)
        self.last_tokens = self._to_tokens(picked) if not self.vocab_tail else picked  # (B, n) ids, for inspection
        bins = (self._to_bins(picked) if self.vocab_tail else picked).view(b, self.chunk_size, self.action_dim)
        return self.tokenizer.decode(bins)  # (B, chunk, A)

    # -- the feature-vector interface does not apply ----------------------------------------------
    def compute_loss(self, features, actions, action_is_pad=None, **_: Any):  # noqa: ANN001
        raise HeadError("ActionTokenHead predicts through the language model; use it inside a VLAModel")

    def predict(self, features, **_: Any):  # noqa: ANN001
        raise HeadError("ActionTokenHead predicts through the language model; use it inside a VLAModel")

    def extra_repr(self) -> str:
        return (f"action_dim={self.action_dim}, chunk_size={self.chunk_size}, n_bins={self.n_bins}, "
                f"range=±{self.action_range}, token_offset={self.token_offset}, vocab_tail={self.vocab_tail}")
