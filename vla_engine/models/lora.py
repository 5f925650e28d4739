"""LoRA adapters on the VLA's language backbone, through peft.

``apply_lora`` wraps ``model.backbone.lm`` (a transformers causal LM) with ``peft.get_peft_model``:
the LM's base weights freeze, low-rank adapters ``W x + (alpha / r) * B(A(x))`` are added to the
target linear layers, and the parts outside the LM (projector, state/query tokens, action head,
the vision encoder unless it is frozen) keep training in full.

Why ``get_peft_model`` (a ``PeftModelForCausalLM`` in place of the LM) and not ``inject_adapter_in_model``:
the wrapper forwards every attribute to the LM, so ``LanguageBackbone.forward`` / ``embed`` /
``gradient_checkpointing_enable`` work unchanged, and peft's own ``merge_and_unload`` and
``save_pretrained`` / ``PeftModel.from_pretrained`` do merging and the adapter files. The VLA's
state-dict keys under ``backbone.lm.`` become peft's (``base_model.model.<name>.base_layer.weight``,
``...lora_A.default.weight``); they are a function of the adapter settings alone, which the model records
as its state, ``model.lora_spec`` (a ``LoRASpec``: ``r``, ``alpha``, ``dropout``, ``target_modules``,
``scope``), and a checkpoint's config.json keeps under ``"adapters"``, so a checkpoint of a LoRA model is
rebuilt with the same structure by ``VLAModel.from_pretrained`` and loaded strictly. After ``merge_lora``
the keys are the plain ones again and ``lora_spec`` is None.

``lora_scope="policy"`` adapts the rest of the policy as well, as OpenVLA's all-linear LoRA and LeRobot's
peft fine-tuning of an action expert do: every ``nn.Linear`` of the projector, the FiLM generator, the state
projection and the action head gets an adapter (``peft.inject_adapter_in_model``, in place, so the parts keep
their own classes and methods) where ``r * (in + out) < in * out``; smaller layers train in full, as they
would as peft's ``modules_to_save``. ``lora_scope="all"`` adds the vision encoder: its ``nn.Linear`` and
``nn.Conv2d`` layers get adapters (peft's conv LoRA: a ``k x k`` conv to ``r`` channels, then a 1x1 conv)
where that is smaller, and its norms and position embedding train in full (unless the vision encoder is
frozen). Attention blocks that read their output projection's weight directly (``nn.MultiheadAttention``)
are left to train in full too.

Adapter folders (``save_adapter`` / ``load_adapter``) hold peft's files, ``adapter_config.json`` +
``adapter_model.safetensors`` (readable by ``peft.PeftModel.from_pretrained`` on the bare LM), plus
``vla_modules.safetensors``: what fine-tuning changed outside the LM (trainable non-LM weights and
the normalisation statistics), so a fresh model built from the same base reproduces the tuned one.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ..config.base import ConfigError
from ..config.model_config import DEFAULT_LORA_TARGETS, LORA_SCOPES, LoRASpec
from ..errors import CheckpointError
from ._util import _first_line, _import_transformers

log = logging.getLogger(__name__)

__all__ = ["LoRAError", "LoRASpec", "DEFAULT_TARGET_MODULES", "LORA_SCOPES", "apply_lora", "apply_lora_spec",
           "has_policy_lora", "merge_lora", "save_adapter", "load_adapter", "lora_parameter_stats", "lm_linear_names",
           "has_lora"]

DEFAULT_TARGET_MODULES = list(DEFAULT_LORA_TARGETS)
POLICY_PARTS = ("projector", "film", "state_proj", "action_head")  # what lora_scope="policy" adapts beyond the LM
VISION_PARTS = ("vision_encoder",)  # what lora_scope="all" adapts beyond "policy"


def scope_parts(scope: str) -> tuple[str, ...]:
    """The non-LM parts that ``scope`` puts adapters on: none for "lm", the policy parts for "policy", and the
    vision encoder too for "all"."""
    return {"lm": (), "policy": POLICY_PARTS, "all": POLICY_PARTS + VISION_PARTS}[scope]
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
VLA_MODULES = "vla_modules.safetensors"


class LoRAError(ConfigError):
    """A LoRA request does not fit the model (unknown target layer, adapters already there). One line."""


def _peft():
    _import_transformers()  # sets USE_TF=0 before peft imports transformers
    import peft

    return peft


def _backbone(model: nn.Module) -> nn.Module:
    bb = getattr(model, "backbone", None)
    if bb is None or not hasattr(bb, "lm"):
        raise LoRAError(f"{type(model).__name__} has no language backbone (model.backbone.lm); LoRA applies to a VLAModel")
    return bb


def has_lora(model: nn.Module) -> bool:
    """Whether ``model.backbone.lm`` is wrapped with peft adapters."""
    bb = getattr(model, "backbone", None)
    lm = getattr(bb, "lm", None)
    if lm is None or "peft" not in type(lm).__module__:
        return False
    return isinstance(lm, _peft().PeftModel)


def _base_lm(lm: nn.Module) -> nn.Module:
    return lm.get_base_model() if hasattr(lm, "get_base_model") and hasattr(lm, "peft_config") else lm


def lm_linear_names(lm: nn.Module) -> list[str]:
    """The distinct names of the decoder's linear layers (what ``target_modules`` may name), e.g.
    ``['down_proj', 'gate_proj', 'k_proj', 'o_proj', 'q_proj', 'up_proj', 'v_proj']``."""
    base = _base_lm(lm)
    decoder = base.get_decoder() if hasattr(base, "get_decoder") else base
    return sorted({name.rsplit(".", 1)[-1] for name, mod in decoder.named_modules() if isinstance(mod, nn.Linear)})


def _check_targets(lm: nn.Module, targets: Sequence[str]) -> list[str]:
    targets = [str(t).strip() for t in targets]
    if not targets or any(not t for t in targets):
        raise LoRAError(f"LoRA target_modules {list(targets)!r} is empty or has an empty name; choose from the "
                        f"language model's linear layers: {', '.join(lm_linear_names(lm))}")
    base = _base_lm(lm)
    decoder = base.get_decoder() if hasattr(base, "get_decoder") else base
    linear = [n for n, mod in decoder.named_modules() if isinstance(mod, nn.Linear)]
    # peft's rule for a list of names: a module matches when its name is the target or ends with ".target"
    unknown = [t for t in targets if not any(n == t or n.endswith("." + t) for n in linear)]
    if unknown:
        raise LoRAError(f"LoRA target_modules {', '.join(map(repr, unknown))} not found in the language model "
                        f"({type(base).__name__}); its linear layers are: {', '.join(lm_linear_names(lm))}")
    return targets


def _wrap(model: nn.Module, r: int, alpha: float, dropout: float, target_modules: Sequence[str]) -> list[str]:
    """Replace ``model.backbone.lm`` by a peft LoRA wrapper (LM base weights frozen by peft)."""
    if r < 1:
        raise LoRAError(f"LoRA rank r={r} is out of range; must be >= 1 (e.g. 8 or 16)")
    if alpha <= 0:
        raise LoRAError(f"LoRA alpha={alpha} is out of range; must be > 0 (e.g. 2 * r)")
    if not 0.0 <= dropout < 1.0:
        raise LoRAError(f"LoRA dropout={dropout} is out of range; must be in [0, 1)")
    bb = _backbone(model)
    if has_lora(model):
        raise LoRAError("the language model already has LoRA adapters; call merge_lora() first to add new ones")
    targets = _check_targets(bb.lm, target_modules)
    peft = _peft()
    cfg = peft.LoraConfig(r=int(r), lora_alpha=alpha, lora_dropout=float(dropout), target_modules=list(targets),
                          bias="none", task_type="CAUSAL_LM")
    bb.lm = peft.get_peft_model(bb.lm, cfg)
    return targets


def _policy_targets(part: nn.Module, r: int) -> list[str]:
    """Names (within ``part``; "" for the part itself) of the linear layers an adapter of rank ``r`` makes
    smaller to train."""
    out = []
    for name, mod in part.named_modules():
        if type(mod) is nn.Conv2d and mod.groups == 1:  # peft's conv LoRA: A = conv(in -> r, k x k), B = conv(r -> out, 1x1)
            k = mod.kernel_size[0] * mod.kernel_size[1]
            if r * (mod.in_channels * k + mod.out_channels) < mod.in_channels * mod.out_channels * k:
                out.append(name)
        elif type(mod) is nn.Linear and r * (mod.in_features + mod.out_features) < mod.in_features * mod.out_features:
            parent = part.get_submodule(name.rsplit(".", 1)[0]) if "." in name else part
            if not (name and isinstance(parent, nn.MultiheadAttention)):
                out.append(name)
    return out


def _wrap_policy(model: nn.Module, r: int, alpha: float, dropout: float, scope: str = "policy") -> list[str]:
    """Inject adapters into the non-LM parts of ``scope`` ("policy" or "all"); returns the qualified layer names."""
    peft = _peft()
    done = []
    for part_name in scope_parts(scope):
        part = getattr(model, part_name, None)
        if not isinstance(part, nn.Module) or has_policy_lora(part):
            continue
        names = _policy_targets(part, r)
        if not names:
            continue
        holder = nn.Module()  # a parent, so that a part which is itself a Linear (FiLM) can be replaced
        holder.add_module("part", part)
        qualified = ["part." + n if n else "part" for n in names]
        pattern = "^(?:" + "|".join(re.escape(n) for n in qualified) + ")$"  # exact names (peft full-matches a str)
        cfg = peft.LoraConfig(r=int(r), lora_alpha=alpha, lora_dropout=float(dropout), target_modules=pattern,
                              bias="none")
        peft.inject_adapter_in_model(cfg, holder)
        setattr(model, part_name, holder.part)
        done += [f"{part_name}.{n}" if n else part_name for n in names]
    return done


def has_policy_lora(module: nn.Module) -> bool:
    """Whether adapters were injected into ``module`` (a non-LM part) by ``lora_scope="policy"``."""
    from peft.tuners.lora import LoraLayer

    return any(isinstance(m, LoraLayer) for m in module.modules())


def policy_part_trainable(param_name: str) -> bool:
    """In a part adapted by ``lora_scope="policy"``: adapters and un-adapted layers train, adapted bases freeze."""
    return ".base_layer." not in "." + param_name


def _merge_policy(model: nn.Module) -> None:
    from peft.tuners.lora import LoraLayer

    for part_name in scope_parts("all"):
        part = getattr(model, part_name, None)
        if not isinstance(part, nn.Module):
            continue
        for name, mod in list(part.named_modules()):
            if isinstance(mod, LoraLayer):
                mod.merge(safe_merge=True)
                base = mod.get_base_layer()
                if name:
                    parent_name, _, child = name.rpartition(".")
                    setattr(part.get_submodule(parent_name) if parent_name else part, child, base)
                else:
                    setattr(model, part_name, base)


def _refreeze(model: nn.Module) -> None:
    if hasattr(model, "_apply_freezing"):
        model._apply_freezing()  # VLAModel: LM base frozen, adapters + non-LM parts by its freeze flags
    else:
        for name, p in _backbone(model).named_parameters():
            p.requires_grad_("lora_" in name)


def _check_scope(scope: str) -> str:
    if scope not in LORA_SCOPES:
        raise LoRAError(f"LoRA scope {scope!r} is unknown; choose from: {', '.join(LORA_SCOPES)} (lm: the language "
                        f"model only; policy: the projector, FiLM and action head too)")
    return scope


def apply_lora(model: nn.Module, r: int = 16, alpha: float = 32, dropout: float = 0.05,
               target_modules: Sequence[str] | None = None, scope: str = "lm") -> nn.Module:
    """Add LoRA adapters to the VLA's language model (in place; returns ``model``).

    The LM's base weights freeze. With ``scope="lm"`` the adapters, the projector, the state/query tokens,
    the action head and the vision encoder (unless frozen) train; with ``scope="policy"`` the projector, FiLM,
    state projection and head get adapters as well and only their small layers train in full; ``scope="all"``
    adapts the vision encoder's conv and linear layers too. ``model.lora_spec`` records the adapters, so
    ``save_pretrained`` checkpoints rebuild them in ``from_pretrained``.
    """
    _check_scope(scope)
    targets = _wrap(model, r, alpha, dropout, list(target_modules or DEFAULT_TARGET_MODULES))
    extra = _wrap_policy(model, r, alpha, dropout, scope) if scope != "lm" else []
    model.lora_spec = LoRASpec(r=int(r), alpha=alpha, dropout=float(dropout), target_modules=tuple(targets),
                               scope=scope)
    _refreeze(model)
    trainable, total = lora_parameter_stats(model)
    log.info("LoRA r=%d alpha=%s on %s%s: %s of %s parameters trainable (%.2f%%)", r, alpha, ",".join(targets),
             f" and {len(extra)} policy layers" if extra else "", f"{trainable:,}", f"{total:,}",
             100.0 * trainable / max(1, total))
    return model


def apply_lora_spec(model: nn.Module, spec: LoRASpec) -> nn.Module:
    """Add the adapters ``spec`` describes (a checkpoint's record): the same structure ``apply_lora`` built, so
    the checkpoint's weights load by name."""
    return apply_lora(model, spec.r, spec.alpha, spec.dropout, list(spec.target_modules), scope=spec.scope)


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold the adapters into the LM's weights (peft ``merge_and_unload``): plain weights and state-dict
    names again, ``model.lora_spec`` None, the same outputs."""
    if not has_lora(model):
        raise LoRAError("the model has no LoRA adapters to merge; add them with add_lora() / training.use_lora")
    bb = _backbone(model)
    bb.lm = bb.lm.merge_and_unload(safe_merge=True)
    _merge_policy(model)
    model.lora_spec = None
    if hasattr(model, "_apply_freezing"):
        model._apply_freezing()
    return model


def lora_parameter_stats(model: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts of the whole model (tied weights counted once)."""
    seen: set[int] = set()
    trainable = total = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return trainable, total


# ------------------------------------------------------------------------------------------------
# Adapter folders
# ------------------------------------------------------------------------------------------------
def _vla_module_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """What fine-tuning changes outside the LM: trainable non-backbone parameters and non-backbone buffers."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, p in model.named_parameters():
        if name.startswith("backbone.") or not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        out[name] = p.detach()
    for name, b in model.named_buffers():
        if not name.startswith("backbone.") and b is not None:
            out[name] = b.detach()
    return {k: v.contiguous().cpu() for k, v in out.items()}


def save_adapter(model: nn.Module, directory: str | os.PathLike) -> Path:
    """Write the LM's LoRA adapter in peft's format (``adapter_config.json`` + ``adapter_model.safetensors``)
    and ``vla_modules.safetensors`` (the trained non-LM parts and normalisation statistics)."""
    from safetensors.torch import save_file

    if not has_lora(model):
        raise LoRAError("the model has no LoRA adapters to save; add them with add_lora() / training.use_lora, "
                        "or save the whole model with save_pretrained")
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    lm = _backbone(model).lm
    lm.save_pretrained(str(d))
    tmp = d / f".{VLA_MODULES}.tmp-{os.getpid()}"
    spec = getattr(model, "lora_spec", None)
    scope = spec.scope if spec is not None else "lm"
    save_file(_vla_module_tensors(model), str(tmp),
              metadata={"format": "pt", "producer": "vla_engine", "lora_scope": scope})
    os.replace(tmp, d / VLA_MODULES)
    return d


def load_adapter(model: nn.Module, directory: str | os.PathLike, is_trainable: bool = True) -> nn.Module:
    """Load an adapter folder written by ``save_adapter`` (or any peft LoRA adapter of this LM) into
    ``model`` built from the same base: adds the adapters when the model has none (with
    ``peft.PeftModel.from_pretrained``) or replaces the weights of matching ones."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    d = Path(directory)
    if not (d / ADAPTER_CONFIG).exists() or not (d / ADAPTER_WEIGHTS).exists():
        raise CheckpointError(f"{d} is not a LoRA adapter folder (needs {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS}); "
                              f"give a folder written by save_adapter or peft's save_pretrained")
    peft = _peft()
    try:
        acfg = peft.LoraConfig.from_pretrained(str(d))
    except Exception as e:  # noqa: BLE001 - a corrupt or non-LoRA adapter_config.json
        raise CheckpointError(f"{d}/{ADAPTER_CONFIG} is not a LoRA adapter config ({_first_line(e)})") from None
    targets = sorted(acfg.target_modules) if isinstance(acfg.target_modules, (set, list, tuple)) else acfg.target_modules
    if isinstance(targets, str):
        raise CheckpointError(f"{d}/{ADAPTER_CONFIG} names its target modules by a pattern ({targets!r}); "
                              f"this loader needs a list of layer names")
    bb = _backbone(model)
    try:
        if has_lora(model):
            have = bb.lm.peft_config["default"]
            if (int(have.r), float(have.lora_alpha), sorted(have.target_modules)) != \
                    (int(acfg.r), float(acfg.lora_alpha), list(targets)):
                raise LoRAError(f"the model's adapters (r={have.r}, alpha={have.lora_alpha} on {sorted(have.target_modules)}) "
                                f"differ from {d}'s (r={acfg.r}, alpha={acfg.lora_alpha} on {list(targets)}); "
                                f"load it into a model without adapters")
            result = peft.set_peft_model_state_dict(bb.lm, peft.utils.load_peft_weights(str(d)))
            if result.unexpected_keys:
                raise CheckpointError(f"adapter {d} has weights this model lacks ({result.unexpected_keys[0]}, ...)")
        else:
            _check_targets(bb.lm, list(targets))
            bb.lm = peft.PeftModel.from_pretrained(bb.lm, str(d), is_trainable=is_trainable)
    except (SafetensorError, OSError, RuntimeError) as e:
        raise CheckpointError(f"adapter {d} does not fit this model ({_first_line(e)}); load it into a model "
                              f"built from the same base") from None
    scope = "lm"
    if (d / VLA_MODULES).exists():
        try:
            from safetensors import safe_open

            with safe_open(str(d / VLA_MODULES), framework="pt") as f:
                scope = (f.metadata() or {}).get("lora_scope", "lm")
        except (SafetensorError, OSError) as e:
            raise CheckpointError(f"{d}/{VLA_MODULES} is corrupt ({_first_line(e)})") from None
        if _check_scope(scope) != "lm":
            _wrap_policy(model, int(acfg.r), acfg.lora_alpha, float(acfg.lora_dropout), scope)
    model.lora_spec = LoRASpec(r=int(acfg.r), alpha=acfg.lora_alpha, dropout=float(acfg.lora_dropout),
                               target_modules=tuple(targets), scope=_check_scope(scope))
    if (d / VLA_MODULES).exists():
        try:
            tensors = load_file(str(d / VLA_MODULES))
            missing_in_model = sorted(set(tensors) - set(model.state_dict()))
            if missing_in_model:
                raise CheckpointError(f"{d}/{VLA_MODULES} has weights this model lacks ({missing_in_model[0]}, ...); "
                                      f"load it into a model of the same configuration")
            model.load_state_dict(tensors, strict=False)
        except (SafetensorError, OSError, RuntimeError) as e:
            raise CheckpointError(f"{d}/{VLA_MODULES} is corrupt or does not fit the model ({_first_line(e)})") from None
    _refreeze(model)
    return model


def adapter_summary(directory: str | os.PathLike) -> dict[str, Any]:
    """The LoRA settings of an adapter folder (``r``, ``lora_alpha``, ``lora_dropout``, ``target_modules``)."""
    data = json.loads((Path(directory) / ADAPTER_CONFIG).read_text())
    return {k: data.get(k) for k in ("r", "lora_alpha", "lora_dropout", "target_modules", "task_type")}
