"""Language backbones (transformers decoders) and the tokenizer that needs no download.

A backbone wraps a transformers causal LM (``Qwen2ForCausalLM``, ``LlamaForCausalLM``, ...) built
from a small config offline, or ``from_pretrained`` a local folder / cached hub id. The VLA uses
only the decoder's hidden states; the LM head stays for language pretraining stages.

The default tokenizer is byte-level (256 byte tokens + <pad>/<bos>/<eos>), made with the
``tokenizers`` library and wrapped as a ``PreTrainedTokenizerFast`` so it saves and loads with
``save_pretrained`` / ``AutoTokenizer``. Instructions repeat across a batch, so ``TextTokenCache``
tokenises each distinct string once.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import torch
from torch import nn

from ..config.base import ConfigError
from ._util import _first_line, _import_transformers, pretrained_load_error  # noqa: F401

log = logging.getLogger(__name__)

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"


# ------------------------------------------------------------------------------------------------
# Tokenizer
# ------------------------------------------------------------------------------------------------
def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable unicode character map (what ByteLevel uses)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def build_byte_tokenizer(model_max_length: int = 1024) -> Any:
    """A byte-level tokenizer (ids 0-255 = bytes, 256 <pad>, 257 <bos>, 258 <eos>) as PreTrainedTokenizerFast."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    tf = _import_transformers()
    vocab = {ch: b for b, ch in _bytes_to_unicode().items()}  # byte value = token id
    vocab.update({PAD: 256, BOS: 257, EOS: 258})
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([PAD, BOS, EOS])
    return tf.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, bos_token=BOS, eos_token=EOS,
                                      model_max_length=model_max_length)


def load_tokenizer(llm_pretrained: str | None, model_max_length: int = 1024) -> Any:
    """The pretrained LM's own tokenizer, or the byte-level one when there is no pretrained LM."""
    if llm_pretrained is None:
        return build_byte_tokenizer(model_max_length)
    tf = _import_transformers()
    try:
        return tf.AutoTokenizer.from_pretrained(llm_pretrained, trust_remote_code=False)
    except Exception as e:  # noqa: BLE001 - a folder without tokenizer files: fall back, say so
        log.warning("no tokenizer could be loaded from %s (%s); using the byte-level tokenizer instead",
                    llm_pretrained, _first_line(e))
        return build_byte_tokenizer(model_max_length)


class TextTokenCache:
    """Tokenises each distinct instruction once; a batch of strings -> padded ids and a mask.

    ``ids`` (B, L) long and ``mask`` (B, L) bool, right-padded to the longest instruction in the
    batch (at most ``max_tokens``). A BOS token is prepended when the tokenizer has one.
    """

    def __init__(self, tokenizer: Any, max_tokens: int = 48, max_entries: int = 50_000):
        self.tokenizer, self.max_tokens, self.max_entries = tokenizer, max_tokens, max_entries
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
        self.bos_id = tokenizer.bos_token_id
        self._cache: dict[str, list[int]] = {}

    def encode(self, text: str) -> list[int]:
        ids = self._cache.get(text)
        if ids is None:
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            if self.bos_id is not None:
                ids = [self.bos_id] + ids
            ids = ids[: self.max_tokens]
            if len(self._cache) >= self.max_entries:
                self._cache.clear()
            self._cache[text] = ids
        return ids

    def __call__(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        seqs = [self.encode(t) for t in texts]
        length = max((len(s) for s in seqs), default=0)
        pad = self.pad_id
        ids = torch.tensor([s + [pad] * (length - len(s)) for s in seqs], dtype=torch.long)  # (B, L)
        mask = torch.tensor([[True] * len(s) + [False] * (length - len(s)) for s in seqs], dtype=torch.bool)  # (B, L)
        return ids.view(len(seqs), length), mask.view(len(seqs), length)


# ------------------------------------------------------------------------------------------------
# Backbones
# ------------------------------------------------------------------------------------------------
class LanguageBackbone(nn.Module):
    """A transformers causal LM used as the VLA's backbone: ``forward(inputs_embeds) -> hidden (B, L, H)``."""

    name: str = "lm"
    config_class: str = ""  # transformers config class for a small model built from scratch

    def __init__(self, lm: nn.Module):
        super().__init__()
        self.lm = lm
        self.hf_config = lm.config
        self.hidden_size = int(lm.config.hidden_size)

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def small_config(cls, cfg: Any, vocab_size: int) -> Any:
        tf = _import_transformers()
        config_cls = getattr(tf, cls.config_class)
        return config_cls(
            vocab_size=vocab_size, hidden_size=cfg.llm_hidden_size, intermediate_size=cfg.llm_intermediate_size,
            num_hidden_layers=cfg.llm_num_layers, num_attention_heads=cfg.llm_num_heads,
            num_key_value_heads=cfg.llm_num_heads, max_position_embeddings=2048, attention_dropout=cfg.dropout,
            tie_word_embeddings=True, pad_token_id=256 if vocab_size > 256 else None,
            bos_token_id=257 if vocab_size > 257 else None, eos_token_id=258 if vocab_size > 258 else None,
        )

    @classmethod
    def from_config(cls, cfg: Any, vocab_size: int, *, hf_config: Any = None, rebuild: bool = False) -> "LanguageBackbone":
        """A backbone for ``cfg``: from ``hf_config`` (a saved checkpoint's structure), from
        ``cfg.llm_pretrained`` (weights included), or small from the config's sizes."""
        tf = _import_transformers()
        if hf_config is not None:  # a saved checkpoint's structure (layers already cut): weights come after
            lm = tf.AutoModelForCausalLM.from_config(hf_config, attn_implementation="sdpa", trust_remote_code=False)
        else:
            lm = cls.build_lm(cfg, vocab_size)
            if getattr(cfg, "llm_layers", 0):
                keep_first_layers(lm, cfg.llm_layers)
        n_embed = lm.get_input_embeddings().weight.shape[0]
        if n_embed < vocab_size:
            lm.resize_token_embeddings(vocab_size)
        return cls(lm)

    @classmethod
    def build_lm(cls, cfg: Any, vocab_size: int) -> nn.Module:
        """The transformers causal LM: ``cfg.llm_pretrained`` (weights included) or small from the config's sizes."""
        tf = _import_transformers()
        if cfg.llm_pretrained is None:
            return tf.AutoModelForCausalLM.from_config(cls.small_config(cfg, vocab_size), attn_implementation="sdpa")
        try:
            lm = tf.AutoModelForCausalLM.from_pretrained(cfg.llm_pretrained, trust_remote_code=False,
                                                         torch_dtype=torch.float32, attn_implementation="sdpa")
        except Exception as e:  # noqa: BLE001 - OSError / ValueError / HF errors: one user message
            raise pretrained_load_error("llm_pretrained", cfg.llm_pretrained, "a causal LM", e) from None
        if getattr(lm.config, "model_type", None) != cls.name:
            log.warning("model.llm is %r but %s is a %r model; using it as it is", cls.name,
                        cfg.llm_pretrained, getattr(lm.config, "model_type", "?"))
        return lm

    # -- use ----------------------------------------------------------------------------------
    @property
    def decoder(self) -> nn.Module:
        return self.lm.get_decoder()

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lm.get_input_embeddings()(ids)  # (B, L) -> (B, L, H)

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None) -> torch.Tensor:
        out = self.decoder(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                           position_ids=position_ids, use_cache=False)
        return out.last_hidden_state  # (B, L, H), after the decoder's final norm

    def gradient_checkpointing_enable(self) -> None:
        self.lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def keep_first_layers(lm: nn.Module, k: int) -> None:
    """Cut a causal LM to its first ``k`` decoder layers (model.llm_layers; SmolVLA keeps half of
    SmolVLM's), in place; its config says so, so a checkpoint rebuilds the cut structure."""
    decoder = lm.get_decoder()
    n = len(decoder.layers)
    if k > n:
        raise ConfigError(f"model.llm_layers is {k} but the language model has {n} decoder layers; "
                          f"set llm_layers to at most {n} (0 = all)")
    if k == n:
        return
    decoder.layers = decoder.layers[:k]  # an nn.ModuleList of the first k layers
    lm.config.num_hidden_layers = k
    if isinstance(getattr(lm.config, "layer_types", None), list):
        lm.config.layer_types = lm.config.layer_types[:k]


class Qwen2Backbone(LanguageBackbone):
    name = "qwen2"
    config_class = "Qwen2Config"


class LlamaBackbone(LanguageBackbone):
    name = "llama"
    config_class = "LlamaConfig"
