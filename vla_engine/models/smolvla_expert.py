"""SmolVLA's action expert (Shukor et al. 2025; LeRobot's ``VLAFlowMatching``) as an action head.

The expert is a smaller copy of the VLM's decoder layers (``head_hidden_dim`` wide, ``head_num_layers`` deep,
the VLM's attention heads and head size) that turns noise into an action chunk by flow matching. It does not
read a pooled feature: it attends to the VLM's per-layer keys / values of the prefix, so the head runs the VLM
layers itself (``capabilities.inputs == "lm"``, like the action-token head) over the sequence ``prompt_format: smolvla`` builds:

    prefix  [image tokens * sqrt(H) (per camera), instruction tokens * sqrt(H), state token]   (B, N, H)
    mask    (B, N, N) bool: images + instruction attend to each other (bidirectional, padding out); the state
            token attends to all of them, they do not attend to it
    pos     (B, N): RoPE positions, cumsum(valid) - 1 (padding does not shift them)

    VLM layer i (the backbone's, first num_vlm_layers): RMSNorm -> q/k/v -> RoPE (wavelength 10000, as
        LeRobot's apply_rope, whatever the LM's rope_theta) -> eager attention under ``mask`` -> o_proj,
        residual -> RMSNorm -> MLP, residual. Its keys (after RoPE) and values are kept: K_i, V_i (B, N, kv, D)
    suffix  x_t (B, C, A_max) noisy actions, t (B,):
        action_in_proj(x_t) (B, C, He) ++ sincos(t; min_period, max_period) (B, C, He)
        -> action_time_mlp_in -> SiLU -> action_time_mlp_out                                     (B, C, He)
    expert layer j (for VLM layer i = j * (num_vlm_layers // num_expert_layers)):
        i % expert_self_attn_every == 0: self-attention of the chunk over [prefix K_i, V_i ; its own k, v]
            (positions continue after the prefix; causal within the chunk)
        otherwise: cross-attention: queries from the chunk (positions 0..C-1), keys / values
            k_proj(K_i), v_proj(V_i) from the VLM's (the expert's k/v_proj read the VLM's kv width)
        then o_proj, residual, RMSNorm, MLP, residual
    final RMSNorm -> action_out_proj -> velocity v (B, C, A_max)

Flow matching with t = 1 at noise: ``x_t = t * noise + (1 - t) * a``, target ``u = noise - a``; training samples
t ~ Beta(1.5, 1) * 0.999 + 0.001. Sampling: Euler from x_1 = noise with dt = -1 / num_steps down to t = 0.
Actions are padded with zeros to ``max_action_dim`` (the noise is that wide) and cut back to ``action_dim``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .configuration_heads import SmolVLAExpertConfig
from .heads import ActionHead, HeadError, masked_action_loss

__all__ = ["SmolVLAExpertHead", "apply_rope", "sincos_time_embedding", "expert_intermediate_size"]

ROPE_WAVELENGTH = 10_000  # LeRobot's apply_rope: fixed, not the LM's rope_theta


def apply_rope(x: torch.Tensor, positions: torch.Tensor, max_wavelength: float = ROPE_WAVELENGTH) -> torch.Tensor:
    """Rotary positions (B, L) applied to x (B, L, heads, D), halves rotated (LeRobot's / HF's layout)."""
    d_half = x.shape[-1] // 2
    dtype = x.dtype
    x = x.float()
    freq_exponents = (2.0 / x.shape[-1]) * torch.arange(d_half, dtype=torch.float32, device=x.device)
    timescale = max_wavelength ** freq_exponents  # (D/2,)
    radians = positions[..., None].float() / timescale[None, None, :]  # (B, L, D/2)
    radians = radians[..., None, :]  # (B, L, 1, D/2)
    sin, cos = torch.sin(radians), torch.cos(radians)
    x1, x2 = x.split(d_half, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).to(dtype)  # (B, L, heads, D)


def sincos_time_embedding(t: torch.Tensor, dim: int, min_period: float, max_period: float) -> torch.Tensor:
    """SmolVLA's sine-cosine embedding of t (B,) -> (B, dim), periods log-spaced in [min_period, max_period]
    (computed in float64 where the device has it, as LeRobot does)."""
    if dim % 2:
        raise HeadError(f"the SmolVLA time embedding needs an even width, got {dim}")
    dtype = torch.float32 if t.device.type == "mps" else torch.float64
    fraction = torch.linspace(0.0, 1.0, dim // 2, dtype=dtype, device=t.device)
    period = min_period * (max_period / min_period) ** fraction  # (dim/2,)
    ang = (1.0 / period * 2 * math.pi)[None, :] * t.to(dtype)[:, None]  # (B, dim/2)
    return torch.cat([torch.sin(ang), torch.cos(ang)], dim=1)  # (B, dim)


def expert_intermediate_size(width: int, ffn_dim_multiplier: int = 4, multiple_of: int = 256) -> int:
    """The expert MLP width LeRobot derives from the expert width (720 -> 2048)."""
    hidden = int(ffn_dim_multiplier * int(2 * width / 3))
    return multiple_of * ((hidden + multiple_of - 1) // multiple_of)


def _eager_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """q (B, Lq, Hq, D), k / v (B, Lk, Hkv, D), mask (B, Lq, Lk) bool (True = attend) -> (B, Lq, Hq * D).
    Scores in float32, masked with the dtype's minimum (a fully masked row stays finite), as LeRobot does."""
    b, lq, hq, d = q.shape
    groups = hq // k.shape[2]
    if groups > 1:  # grouped-query attention: each kv head serves `groups` query heads
        k = k.repeat_interleave(groups, dim=2)
        v = v.repeat_interleave(groups, dim=2)
    scores = torch.matmul(q.float().transpose(1, 2), k.float().permute(0, 2, 3, 1)) * d ** -0.5  # (B, Hq, Lq, Lk)
    scores = torch.where(mask[:, None], scores, torch.finfo(scores.dtype).min)
    probs = scores.softmax(dim=-1).to(v.dtype)
    out = torch.matmul(probs, v.transpose(1, 2))  # (B, Hq, Lq, D)
    return out.transpose(1, 2).reshape(b, lq, hq * d)


class _RMSNorm(nn.Module):
    """Llama's RMSNorm (float32 statistics)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(dtype)


class _MLP(nn.Module):
    """Llama's gated MLP: down(act(gate(x)) * up(x))."""

    def __init__(self, dim: int, hidden: int, act: str):
        super().__init__()
        from transformers.activations import ACT2FN

        self.gate_proj = nn.Linear(dim, hidden, bias=False)
        self.up_proj = nn.Linear(dim, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, dim, bias=False)
        self.act_fn = ACT2FN[act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int, kv_heads: int, head_dim: int, kv_in: int, bias: bool):
        super().__init__()
        self.q_proj = nn.Linear(dim, heads * head_dim, bias=bias)
        self.k_proj = nn.Linear(kv_in, kv_heads * head_dim, bias=bias)
        self.v_proj = nn.Linear(kv_in, kv_heads * head_dim, bias=bias)
        self.o_proj = nn.Linear(heads * head_dim, dim, bias=bias)


class _ExpertLayer(nn.Module):
    """One expert decoder layer (LeRobot's ``lm_expert.layers.i`` names)."""

    def __init__(self, dim: int, hidden: int, heads: int, kv_heads: int, head_dim: int, kv_in: int, eps: float,
                 act: str, bias: bool):
        super().__init__()
        self.self_attn = _Attention(dim, heads, kv_heads, head_dim, kv_in, bias)
        self.mlp = _MLP(dim, hidden, act)
        self.input_layernorm = _RMSNorm(dim, eps)
        self.post_attention_layernorm = _RMSNorm(dim, eps)


class _Expert(nn.Module):
    def __init__(self, layers: list[_ExpertLayer], dim: int, eps: float):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.norm = _RMSNorm(dim, eps)


class SmolVLAExpertHead(ActionHead):
    """SmolVLA's flow-matching action expert over the VLM's per-layer keys / values (module docstring).

    Args: ``action_dim``, ``chunk_size``, ``hidden_dim`` (expert width), ``num_layers`` (expert layers; must
    divide the VLM's), ``num_steps`` (Euler steps), ``max_action_dim`` (noise width, >= action_dim; 0 = action_dim),
    ``self_attn_every`` (every n-th layer from 0 self-attention, the others cross-attention; 1 = all
    self-attention, 0 = all cross-attention), ``min_period`` / ``max_period`` (time embedding).
    The expert layers are built when the model attaches its LM (``attach_backbone``): their head count, head
    size, norm epsilon and activation are the LM's.
    """

    name = "smolvla-expert"
    config_class = SmolVLAExpertConfig
    capabilities = SmolVLAExpertConfig.capabilities

    def __init__(self, action_dim: int = 7, chunk_size: int = 50, hidden_dim: int = 720, num_layers: int = 16,
                 num_steps: int = 10, max_action_dim: int = 0, self_attn_every: int = 2, min_period: float = 4e-3,
                 max_period: float = 4.0, input_dim: int | None = None):
        max_action_dim = int(max_action_dim) or int(action_dim)
        if max_action_dim < action_dim:
            raise HeadError(f"SmolVLAExpertHead max_action_dim ({max_action_dim}) is below action_dim ({action_dim})")
        if hidden_dim < 2 or hidden_dim % 2:
            raise HeadError(f"SmolVLAExpertHead hidden_dim must be even (time embedding), got {hidden_dim}")
        if num_layers < 1 or num_steps < 1 or self_attn_every < 0:
            raise HeadError(f"SmolVLAExpertHead needs num_layers >= 1, num_steps >= 1, self_attn_every >= 0; got "
                            f"{num_layers}, {num_steps}, {self_attn_every}")
        if not 0 < min_period < max_period:
            raise HeadError(f"SmolVLAExpertHead needs 0 < min_period < max_period, got {min_period}, {max_period}")
        self.hidden_dim, self.num_layers, self.num_steps = int(hidden_dim), int(num_layers), int(num_steps)
        self.max_action_dim, self.self_attn_every = max_action_dim, int(self_attn_every)
        self.min_period, self.max_period = float(min_period), float(max_period)
        self.expert: _Expert | None = None
        super().__init__(action_dim, chunk_size, input_dim)

    @classmethod
    def from_config(cls, cfg: Any, input_dim: int | None = None) -> "SmolVLAExpertHead":
        h = cfg.head
        return cls(action_dim=cfg.action_dim, chunk_size=cfg.chunk_size, hidden_dim=h.hidden_dim,
                   num_layers=h.num_layers, num_steps=h.num_inference_steps, max_action_dim=h.max_action_dim,
                   self_attn_every=h.self_attn_every, min_period=h.min_period,
                   max_period=h.max_period, input_dim=input_dim)

    def configure_sampling(self, num_inference_steps: int | None = None) -> None:
        """Euler steps of ``predict_lm`` (training is unchanged)."""
        if num_inference_steps is not None:
            if int(num_inference_steps) < 1:
                raise HeadError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
            self.num_steps = int(num_inference_steps)

    def head_settings(self) -> dict[str, Any]:
        return {"hidden_dim": self.hidden_dim, "num_layers": self.num_layers, "num_inference_steps": self.num_steps,
                "max_action_dim": self.max_action_dim, "self_attn_every": self.self_attn_every,
                "min_period": self.min_period, "max_period": self.max_period}

    # -- construction ------------------------------------------------------------------------------
    def _build(self, input_dim: int) -> None:
        h, a = self.hidden_dim, self.max_action_dim
        self.action_in_proj = nn.Linear(a, h)  # (B, C, A_max) -> (B, C, He)
        self.action_out_proj = nn.Linear(h, a)  # (B, C, He) -> (B, C, A_max)
        self.action_time_mlp_in = nn.Linear(2 * h, h)
        self.action_time_mlp_out = nn.Linear(h, h)

    def _is_self_attn(self, vlm_layer: int) -> bool:
        n = self.self_attn_every
        return n > 0 and vlm_layer % n == 0

    def attach_backbone(self, backbone: nn.Module, vocab_size: int | None = None) -> None:
        """Build the expert layers for the LM ``backbone`` (its heads, head size, depth, norm epsilon, activation)."""
        if self.expert is not None:
            return
        hf = backbone.hf_config
        heads = int(hf.num_attention_heads)
        kv_heads = int(getattr(hf, "num_key_value_heads", None) or heads)
        head_dim = int(getattr(hf, "head_dim", None) or int(hf.hidden_size) // heads)
        n_vlm = len(backbone.decoder.layers)
        if n_vlm % self.num_layers:
            raise HeadError(f"the smolvla-expert has {self.num_layers} layers but the LM keeps {n_vlm}; the expert's "
                            f"layer count must divide the LM's (model.head.num_layers)")
        self.stride = n_vlm // self.num_layers
        # LeRobot shapes expert layer j for cross-attention by j, and runs it at LM layer j * stride: both must agree,
        # and every self-attention LM layer needs its expert layer
        if any(self._is_self_attn(i) and i % self.stride for i in range(n_vlm)) or any(
                self._is_self_attn(j) != self._is_self_attn(j * self.stride) for j in range(self.num_layers)):
            raise HeadError(f"a smolvla-expert of {self.num_layers} layers over {n_vlm} LM layers with self-attention "
                            f"every {self.self_attn_every} layers is inconsistent (LeRobot cannot run it either); "
                            f"change head_num_layers or expert_self_attn_every")
        eps = float(getattr(hf, "rms_norm_eps", 1e-5))
        act = str(getattr(hf, "hidden_act", "silu"))
        bias = bool(getattr(hf, "attention_bias", False))
        kv_width = kv_heads * head_dim
        layers = [_ExpertLayer(self.hidden_dim, expert_intermediate_size(self.hidden_dim), heads, kv_heads, head_dim,
                               self.hidden_dim if self._is_self_attn(j * self.stride) else kv_width, eps, act, bias)
                  for j in range(self.num_layers)]
        self.expert = _Expert(layers, self.hidden_dim, eps)
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, head_dim
        ref = next(backbone.parameters())
        self.expert.to(ref.device)

    def _check_attached(self) -> None:
        if self.expert is None:
            raise HeadError("SmolVLAExpertHead has no expert layers yet; attach it to a VLAModel (prompt_format: "
                            "smolvla), which builds them for its language model")

    # -- the VLM prefix -----------------------------------------------------------------------------
    def prefix_kv(self, backbone: nn.Module, seq: torch.Tensor, mask: torch.Tensor,
                  pos: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Run the LM's decoder layers over the prefix (B, N, H) under ``mask`` (B, N, N) at ``pos`` (B, N);
        each layer's keys (after RoPE) and values: [(B, N, kv, D), (B, N, kv, D)] per layer."""
        layers = backbone.decoder.layers
        b, n = seq.shape[:2]
        h = seq
        out = []
        for i, layer in enumerate(layers):
            attn = layer.self_attn
            x = layer.input_layernorm(h)
            q = attn.q_proj(x).view(b, n, -1, self.head_dim)
            k = attn.k_proj(x).view(b, n, -1, self.head_dim)
            v = attn.v_proj(x).view(b, n, -1, self.head_dim)
            k = apply_rope(k, pos)
            out.append((k, v))
            if i == len(layers) - 1:
                break  # the last layer's output is never read, only its keys / values
            h = h + attn.o_proj(_eager_attention(apply_rope(q, pos), k, v, mask))  # (B, N, H)
            h = h + layer.mlp(layer.post_attention_layernorm(h))
        return out

    # -- the expert ---------------------------------------------------------------------------------
    def embed_suffix(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Noisy actions (B, C, A_max) and time (B,) -> expert tokens (B, C, He)."""
        emb = self.action_in_proj(x_t)  # (B, C, He)
        te = sincos_time_embedding(t, self.hidden_dim, self.min_period, self.max_period).to(emb.dtype)  # (B, He)
        x = torch.cat([emb, te[:, None, :].expand_as(emb)], dim=2)  # (B, C, 2 He)
        return self.action_time_mlp_out(F.silu(self.action_time_mlp_in(x)))  # (B, C, He)

    def velocity(self, kv: list[tuple[torch.Tensor, torch.Tensor]], prefix_valid: torch.Tensor, x_t: torch.Tensor,
                 t: torch.Tensor) -> torch.Tensor:
        """v(x_t, t | prefix): ``kv`` from ``prefix_kv``, ``prefix_valid`` (B, N) bool, x_t (B, C, A_max), t (B,)
        -> (B, C, A_max)."""
        self._check_attached()
        h = self.embed_suffix(x_t, t)  # (B, C, He)
        b, c = h.shape[:2]
        n = prefix_valid.shape[1]
        dev = h.device
        steps = torch.arange(c, device=dev)
        pos_self = prefix_valid.long().sum(-1, keepdim=True) + steps[None]  # (B, C): after the prefix
        pos_cross = steps[None].expand(b, c)  # (B, C): from 0
        to_prefix = prefix_valid[:, None, :].expand(b, c, n)  # (B, C, N)
        causal = torch.ones(c, c, dtype=torch.bool, device=dev).tril()[None].expand(b, c, c)  # (B, C, C)
        mask_self = torch.cat([to_prefix, causal], dim=2)  # (B, C, N + C)
        for j, layer in enumerate(self.expert.layers):
            i = j * self.stride  # the VLM layer whose keys / values it reads
            k_vlm, v_vlm = kv[i]
            attn = layer.self_attn
            x = layer.input_layernorm(h)
            q = attn.q_proj(x).view(b, c, -1, self.head_dim)
            if self._is_self_attn(i):
                k = apply_rope(attn.k_proj(x).view(b, c, -1, self.head_dim), pos_self)
                v = attn.v_proj(x).view(b, c, -1, self.head_dim)
                out = _eager_attention(apply_rope(q, pos_self), torch.cat([k_vlm.to(k.dtype), k], 1),
                                       torch.cat([v_vlm.to(v.dtype), v], 1), mask_self)
            else:
                k = attn.k_proj(k_vlm.flatten(2).to(attn.k_proj.weight.dtype)).view(b, n, -1, self.head_dim)
                v = attn.v_proj(v_vlm.flatten(2).to(attn.v_proj.weight.dtype)).view(b, n, -1, self.head_dim)
                out = _eager_attention(apply_rope(q, pos_cross), k, v, to_prefix)
            h = h + attn.o_proj(out)  # (B, C, He)
            h = h + layer.mlp(layer.post_attention_layernorm(h))
        return self.action_out_proj(self.expert.norm(h).float())  # (B, C, A_max)

    # -- the head interface (inputs "lm": the model passes its LM and the prefix) -----------------------
    def _pad(self, actions: torch.Tensor) -> torch.Tensor:
        return F.pad(actions, (0, self.max_action_dim - actions.shape[-1]))  # (B, C, A_max)

    def compute_loss_lm(self, backbone: nn.Module, seq: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor,
                        actions: torch.Tensor, action_is_pad: torch.Tensor | None = None,
                        noise: torch.Tensor | None = None,
                        time: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """Flow-matching loss on normalised actions (B, C, A) (zero-padded to A_max, as SmolVLA trains)."""
        self._check_attached()
        a = self._pad(actions.float())  # (B, C, A_max)
        b = a.shape[0]
        noise = torch.randn_like(a) if noise is None else noise.to(a)
        if time is None:
            time = torch.distributions.Beta(1.5, 1.0).sample((b,)).to(a.device) * 0.999 + 0.001  # (B,)
        tt = time[:, None, None]
        x_t = tt * noise + (1 - tt) * a  # (B, C, A_max)
        kv = self.prefix_kv(backbone, seq, mask, pos)
        v = self.velocity(kv, mask.diagonal(dim1=1, dim2=2), x_t, time)  # (B, C, A_max)
        loss = masked_action_loss(v, noise - a, action_is_pad, "mse")
        return loss, {"flow_mse": float(loss.detach())}

    @torch.no_grad()
    def predict_lm(self, backbone: nn.Module, seq: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor,
                   noise: torch.Tensor | None = None, num_steps: int | None = None) -> torch.Tensor:
        """Euler sampling from ``noise`` (B, C, A_max; default standard normal) at t = 1 to t = 0; the
        normalised chunk (B, C, action_dim)."""
        self._check_attached()
        b = seq.shape[0]
        shape = (b, self.chunk_size, self.max_action_dim)
        if noise is None:
            noise = torch.randn(shape, device=seq.device)
        elif tuple(noise.shape) != shape:
            raise HeadError(f"noise has shape {tuple(noise.shape)}; the smolvla-expert samples {shape} "
                            f"(batch, chunk_size, max_action_dim)")
        kv = self.prefix_kv(backbone, seq, mask, pos)
        valid = mask.diagonal(dim1=1, dim2=2)  # (B, N): the prefix tokens that are not padding
        n = int(num_steps or self.num_steps)
        dt = -1.0 / n
        x = noise.to(seq.device, torch.float32)
        for step in range(n):
            t = torch.full((b,), 1.0 + step * dt, dtype=torch.float32, device=seq.device)
            x = x + dt * self.velocity(kv, valid, x, t)
        return x[..., : self.action_dim]  # (B, C, A)

    # plain-head entry points: this head needs the LM (VLAModel routes "lm"-input heads to *_lm)
    def compute_loss(self, features, actions, action_is_pad=None):  # noqa: D102
        raise HeadError("SmolVLAExpertHead reads the LM's layers; use it in a VLAModel with prompt_format: smolvla")

    def predict(self, features):  # noqa: D102
        raise HeadError("SmolVLAExpertHead reads the LM's layers; use it in a VLAModel with prompt_format: smolvla")

    def extra_repr(self) -> str:
        return (f"action_dim={self.action_dim}, max_action_dim={self.max_action_dim}, chunk_size={self.chunk_size}, "
                f"hidden_dim={self.hidden_dim}, num_layers={self.num_layers}, num_steps={self.num_steps}, "
                f"self_attn_every={self.self_attn_every}")
