"""The action heads' settings: one small config class per head, registered with it (``ACTION_HEADS.register(
name, "module:Head", config="module:HeadConfig")``), and what each head declares it needs (``HeadCapabilities``).

This module is light (no torch): the model config validates a head's settings when a preset is read, before
anything is built. ``model.head`` in a config file holds the chosen head's fields:

    action_head: diffusion
    head: {hidden_dim: 256, num_inference_steps: 10, use_ddim: true}

Model-level settings the heads read as well (``action_dim``, ``chunk_size``, ``dropout``, ``action_loss``,
``normalization``) stay on the model config: more than one part reads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from ..config.base import ConfigBase


@dataclass(frozen=True)
class HeadCapabilities:
    """What an action head needs from the model, declared as data so the model and the config read it instead of
    testing the head for attributes.

    ``takes_noise``: ``predict_lm(..., noise=)`` takes the start noise, to reproduce a given sampling run.
    ``inputs``: "pooled" = the LM's hidden state at the action query (B, H); "tokens" = that and the LM's whole
    final hidden sequence (``context`` (B, N, H), ``context_mask`` (B, N)); "lm" = the head runs the language model
    itself over the prompt (``compute_loss_lm`` / ``predict_lm``).
    ``sampling_settings``: the settings of a head that samples noise at inference, changeable on a trained model
    (``VLAModel.configure_inference``). ``attaches_lm``: the model hands the head its LM and tokenizer once built
    (``attach_backbone``), e.g. to extend the vocabulary. ``prompt_format``: the prompt format the head needs (and
    that only it reads), None = any. ``regression_loss``: ``model.action_loss`` sets its training loss.
    """

    inputs: Literal["pooled", "tokens", "lm"] = "pooled"
    sampling_settings: tuple[str, ...] = ()
    attaches_lm: bool = False
    prompt_format: str | None = None
    regression_loss: bool = False
    takes_noise: bool = False


class HeadConfig(ConfigBase):
    """Base of the head configs: its fields are the head's own settings; ``capabilities`` what it needs."""

    _section: ClassVar[str] = "model.head"
    capabilities: ClassVar[HeadCapabilities] = HeadCapabilities()

    def check_model(self, model: Any) -> None:
        """Checks against model-level settings (``model`` is the ModelConfig); raise ConfigError."""


@dataclass
class MLPHeadConfig(HeadConfig):
    """The mlp head: an MLP regressing the whole chunk from the action-query feature."""

    capabilities: ClassVar[HeadCapabilities] = HeadCapabilities(regression_loss=True)

    hidden_dim: int = 256  # width of the hidden layers
    num_layers: int = 2  # linear layers (1 = a single linear map)
    # chunk step k weighs chunk_loss_decay**k in the loss (1 = every step the same)
    chunk_loss_decay: float = 1.0

    def validate(self) -> None:
        self._check_range("hidden_dim", 1)
        self._check_range("num_layers", 1)
        self._check_range("chunk_loss_decay", 0.0, 1.0, lo_open=True)


@dataclass
class GaussianHeadConfig(HeadConfig):
    """The gaussian head: mean and learned std per action (log-probabilities for RL)."""

    capabilities: ClassVar[HeadCapabilities] = HeadCapabilities(regression_loss=True)

    hidden_dim: int = 256  # width of the hidden layers
    num_layers: int = 2  # linear layers from the feature to the mean (1 = a linear map)
    min_std: float = 0.01  # smallest standard deviation
    max_std: float = 1.0  # largest standard deviation

    def validate(self) -> None:
        self._check_range("hidden_dim", 1)
        self._check_range("num_layers", 1)
        self._check_range("min_std", 1e-6, 10.0)
        self._check_range("max_std", self.min_std, 100.0)
        if self.max_std <= self.min_std:
            self._fail("max_std", f"must be above min_std ({self.min_std})")


@dataclass
class DiffusionHeadConfig(HeadConfig):
    """The diffusion head: denoising diffusion over action chunks (DDPM training, DDPM / DDIM sampling)."""

    capabilities: ClassVar[HeadCapabilities] = HeadCapabilities(
        sampling_settings=("num_inference_steps", "use_ddim"), regression_loss=True)

    hidden_dim: int = 256  # width of the denoiser's residual blocks
    num_layers: int = 2  # FiLM residual blocks in the denoiser
    num_train_timesteps: int = 100  # training noise steps (DDPM)
    num_inference_steps: int = 10  # sampling steps at inference
    use_ddim: bool = True  # DDIM (deterministic, few steps) or DDPM sampling at inference
    prediction_type: Literal["epsilon", "sample"] = "epsilon"  # what the denoiser predicts
    beta_schedule: Literal["squaredcos_cap_v2", "linear", "scaled_linear"] = "squaredcos_cap_v2"  # noise schedule
    clip_sample: float | None = None  # clamp predicted chunks to +-this; None = by normalization, 0 = off
    noise_samples: int = 1  # (noise, step) draws per example in each batch (Octo's n_diffusion_samples)

    def validate(self) -> None:
        self._check_range("hidden_dim", 1)
        self._check_range("num_layers", 1)
        self._check_range("num_train_timesteps", 2, 10000)
        self._check_range("num_inference_steps", 1, self.num_train_timesteps)
        self._check_range("clip_sample", 0.0)
        self._check_range("noise_samples", 1, 64)


@dataclass
class TransformerHeadConfig(HeadConfig):
    """The transformer head: chunk queries cross-attending to the LM context (ACT-style)."""

    capabilities: ClassVar[HeadCapabilities] = HeadCapabilities(inputs="tokens", regression_loss=True)

    hidden_dim: int = 256  # decoder width
    num_layers: int = 2  # decoder layers
    num_heads: int = 4  # attention heads
    causal: bool = True  # chunk step k attends to steps <= k only
    # chunk step k weighs chunk_loss_decay**k in the loss (1 = every step the same)
    chunk_loss_decay: float = 1.0

    def validate(self) -> None:
        self._check_range("hidden_dim", 1)
        self._check_range("num_layers", 1)
        self._check_range("num_heads", 1)
        if self.hidden_dim % self.num_heads:
            self._fail("hidden_dim", f"must be a multiple of num_heads ({self.num_heads})")
        self._check_range("chunk_loss_decay", 0.0, 1.0, lo_open=True)


@dataclass
class FlowHeadConfig(HeadConfig):
    """The flow head: a flow-matching action expert over the chunk (pi0-style), Euler sampling."""

    capabilities: ClassVar[HeadCapabilities] = HeadCapabilities(inputs="tokens",
                                                                sampling_settings=("num_inference_steps",))

    hidden_dim: int = 256  # expert width
    num_layers: int = 2  # expert layers
    num_heads: int = 4  # attention heads
    num_inference_steps: int = 10  # Euler steps at inference

    def validate(self) -> None:
        self._check_range("hidden_dim", 2)
        self._check_range("num_layers", 1)
        self._check_range("num_heads", 1)
        if self.hidden_dim % self.num_heads or self.hidden_dim % 2:
            self._fail("hidden_dim", f"must be even and a multiple of num_heads ({self.num_heads})")
        self._check_range("num_inference_steps", 1)


@dataclass
class TokenHeadConfig(HeadConfig):
    """The tokens head: OpenVLA-style discrete action tokens predicted through the LM's vocabulary."""

    capabilities: ClassVar[HeadCapabilities] = HeadCapabilities(inputs="lm", attaches_lm=True)

    bins: int = 256  # bins per action dimension
    # "append" = new token ids after the tokenizer's vocabulary (one per bin); "vocab_tail" = OpenVLA's: the last
    # bins ids of the tokenizer's own vocabulary, bin edges linspace(-1, 1, bins), greedy decoding and
    # cross-entropy over the whole vocabulary
    token_ids: Literal["append", "vocab_tail"] = "append"

    def validate(self) -> None:
        self._check_range("bins", 2, 4096)
        if self.token_ids == "vocab_tail" and self.bins < 3:
            self._fail("bins", "is below 3 but token_ids: vocab_tail needs >= 3 (bins edges give bins - 1 bins); "
                               "OpenVLA uses 256")


@dataclass
class SmolVLAExpertConfig(HeadConfig):
    """The smolvla-expert head: SmolVLA's action expert, an LM-layer copy attending to the VLM's keys / values."""

    capabilities: ClassVar[HeadCapabilities] = HeadCapabilities(
        inputs="lm", sampling_settings=("num_inference_steps",), attaches_lm=True, prompt_format="smolvla",
        takes_noise=True)

    hidden_dim: int = 256  # expert width
    num_layers: int = 2  # expert depth (one layer per LM layer it reads)
    num_inference_steps: int = 10  # Euler steps at inference
    max_action_dim: int = 0  # noise / velocity width, actions zero-padded to it (SmolVLA's); 0 = action_dim
    self_attn_every: int = 2  # every n-th LM layer (from 0) self-attention, the others cross; 1 = all self, 0 = all cross
    min_period: float = 4e-3  # time embedding: shortest sine period
    max_period: float = 4.0  # time embedding: longest sine period

    def validate(self) -> None:
        self._check_range("hidden_dim", 2)
        if self.hidden_dim % 2:
            self._fail("hidden_dim", "must be even (time embedding)")
        self._check_range("num_layers", 1)
        self._check_range("num_inference_steps", 1)
        self._check_range("max_action_dim", 0)
        self._check_range("self_attn_every", 0, 1024)
        self._check_range("min_period", 0.0, lo_open=True)
        if self.max_period <= self.min_period:
            self._fail("max_period", f"must be above min_period ({self.min_period})")

    def check_model(self, model: Any) -> None:
        if self.max_action_dim and self.max_action_dim < model.action_dim:
            self._fail("max_action_dim", f"is below model.action_dim ({model.action_dim}); set it >= action_dim, or 0")


# The flat model fields an earlier version had for the heads -> their name in the head configs (a file that
# still names them is moved into ``model.head``; a key the chosen head has not is dropped, as it was ignored)
FLAT_HEAD_KEYS: dict[str, str] = {
    "head_hidden_dim": "hidden_dim", "head_num_layers": "num_layers", "head_num_heads": "num_heads",
    "min_std": "min_std", "max_std": "max_std", "num_diffusion_steps": "num_train_timesteps",
    "num_inference_steps": "num_inference_steps", "use_ddim": "use_ddim", "prediction_type": "prediction_type",
    "diffusion_beta_schedule": "beta_schedule", "diffusion_clip_sample": "clip_sample",
    "diffusion_noise_samples": "noise_samples", "head_causal": "causal", "action_bins": "bins",
    "action_token_ids": "token_ids", "max_action_dim": "max_action_dim", "expert_self_attn_every": "self_attn_every",
    "flow_min_period": "min_period", "flow_max_period": "max_period", "chunk_loss_decay": "chunk_loss_decay",
}
