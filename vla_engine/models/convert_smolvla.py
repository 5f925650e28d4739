"""Load a LeRobot SmolVLA policy folder (``lerobot/smolvla_base`` format, written by lerobot 0.4's
``SmolVLAPolicy.save_pretrained`` and its policy processors) as a ``SmolVLAWrapper`` that acts like it.

The folder holds ``config.json`` (``type: smolvla``: features, chunk size, ``max_state_dim`` /
``max_action_dim``, ``num_vlm_layers``, ``vlm_model_name``, ...), ``model.safetensors`` and the
normalisation statistics in ``policy_preprocessor.json`` / ``policy_postprocessor.json`` with their
``*_normalizer_processor.safetensors`` state files (older folders keep them in ``model.safetensors`` as
``normalize_inputs.*`` / ``unnormalize_outputs.*``). The VLM's own config and tokenizer are not in the folder:
they come from ``vlm_model_name`` (a local folder or a cached hub id) or the ``vlm=`` folder given. Nothing is
imported from the folders (no remote code, no pickles): weights are read with safetensors and mapped by name.

    model.vlm_with_expert.vlm.model.vision_model.*   -> vision_encoder.vision_model.*   (SmolVLMVision)
    model.vlm_with_expert.vlm.model.connector.*      -> vision_encoder.connector.*
    model.vlm_with_expert.vlm.model.text_model.*     -> backbone.lm.model.*             (the cut LM, a Llama)
    model.vlm_with_expert.vlm.lm_head.*              -> backbone.lm.lm_head.*
    model.vlm_with_expert.lm_expert.*                -> action_head.expert.*            (SmolVLAExpertHead)
    model.action_in_proj / action_out_proj / action_time_mlp_in / _out -> action_head.*
    model.state_proj.weight (H, max_state_dim)       -> state_proj.weight[:, :state_dim] (the padded state
                                                        entries are zero, so the other columns never count)

The model it builds runs SmolVLA's computation (``prompt_format: smolvla``, ``action_head: smolvla-expert``,
``projector: identity``, ``image_resize: pad``): see ``models/smolvla_expert.py``. Saved again with
``save_pretrained`` it reloads as an ordinary vla_engine checkpoint.

    model = SmolVLAWrapper.from_lerobot("smolvla_base", vlm="SmolVLM2-500M-Video-Instruct")
    action = model.select_action(model.prepare_observation({"pixels": rgb, "agent_pos": q}, "pick up the cube"))
"""

from __future__ import annotations

import copy
import logging
import re
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from ..errors import CheckpointError
from ._convert import build_empty, load_mapped_strict, read_folder_config, read_json, read_tokenizer
from ._util import _first_line, _import_transformers
from .formats import is_smolvla_config
from .wrappers import SmolVLAWrapper

log = logging.getLogger(__name__)

__all__ = ["is_smolvla_config", "read_smolvla_config", "read_smolvla_weights", "read_smolvla_stats", "load_smolvla"]

FIX = "give a LeRobot SmolVLA policy folder (config.json with type: smolvla, model.safetensors, policy processors)"
_P = "model.vlm_with_expert."
_RENAMES = ((_P + "vlm.model.vision_model.", "vision_encoder.vision_model."),
            (_P + "vlm.model.connector.", "vision_encoder.connector."),
            (_P + "vlm.model.text_model.", "backbone.lm.model."),
            (_P + "vlm.lm_head.", "backbone.lm.lm_head."),
            (_P + "lm_expert.", "action_head.expert."),
            ("model.action_in_proj.", "action_head.action_in_proj."),
            ("model.action_out_proj.", "action_head.action_out_proj."),
            ("model.action_time_mlp_in.", "action_head.action_time_mlp_in."),
            ("model.action_time_mlp_out.", "action_head.action_time_mlp_out."),
            ("model.state_proj.", "state_proj."))
_LEGACY_STATS = ("normalize_inputs.", "normalize_targets.", "unnormalize_outputs.")
# model weights that are vla_engine's own (no SmolVLA counterpart): they keep their initial values
_OWN_WEIGHTS = ("action_query", "action_normalizer.", "state_normalizer.")
_MODES = {"MEAN_STD": "mean_std", "MIN_MAX": "min_max", "IDENTITY": "none"}


# ------------------------------------------------------------------------------------------------
# Reading the folder
# ------------------------------------------------------------------------------------------------
def read_smolvla_config(folder: str | Path) -> dict[str, Any]:
    """The folder's config.json, checked to be a SmolVLA policy config this loader can reproduce."""
    f, data = read_folder_config(folder, "SmolVLA", FIX)
    if not is_smolvla_config(data):
        kind = data.get("type", data.get("model_type")) if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(f"{f} is not a LeRobot SmolVLA config (type {kind!r}, not 'smolvla'); {FIX}")
    missing = [k for k in ("input_features", "output_features", "chunk_size", "max_state_dim", "max_action_dim",
                           "vlm_model_name") if data.get(k) in (None, {}, "")]
    if missing:
        raise CheckpointError(f"{f} lacks {', '.join(missing)}; it is not a complete SmolVLA config, re-download it")
    for key, bad in (("adapt_to_pi_aloha", True), ("use_delta_joint_actions_aloha", True),
                     ("add_image_special_tokens", True)):
        if data.get(key) == bad:
            raise CheckpointError(f"{f}: {key}: {bad} is not supported by this loader (SmolVLA's default is off)")
    if int(data.get("empty_cameras") or 0):
        raise CheckpointError(f"{f}: empty_cameras {data['empty_cameras']} is not supported; give every camera")
    if int(data.get("n_obs_steps", 1)) != 1:
        raise CheckpointError(f"{f}: n_obs_steps {data['n_obs_steps']} is not supported; SmolVLA reads one step")
    mode = str(data.get("attention_mode", "cross_attn"))
    if mode not in ("cross_attn", "self_attn"):
        raise CheckpointError(f"{f}: attention_mode {mode!r} is not known; SmolVLA has cross_attn and self_attn")
    return data


def read_smolvla_weights(folder: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of the folder's ``model.safetensors``."""
    from safetensors import SafetensorError, safe_open

    d = Path(folder).expanduser()
    path = d / "model.safetensors"
    if not path.exists():
        other = sorted(p.name for p in d.glob("*.bin")) + sorted(p.name for p in d.glob("*.pt"))
        hint = f" (it has {other[0]}: pickled weights are not read)" if other else ""
        raise CheckpointError(f"SmolVLA folder {d} has no model.safetensors{hint}; {FIX}")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as sf:
            return {k: sf.get_tensor(k) for k in sf.keys()}
    except (SafetensorError, OSError, RuntimeError, ValueError) as e:
        raise CheckpointError(f"weight file {path} is corrupt ({_first_line(e)}); re-download it") from None


def _processor_stats(d: Path, name: str, step: str) -> dict[str, torch.Tensor]:
    """The state tensors (``key.stat``) of the ``step`` (normalizer / unnormalizer) of a policy processor."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    f = d / f"{name}.json"
    if not f.exists():
        return {}
    data = read_json(f)
    out: dict[str, torch.Tensor] = {}
    for s in (data.get("steps") or []) if isinstance(data, dict) else []:
        if s.get("registry_name") != step or not s.get("state_file"):
            continue
        path = d / str(s["state_file"])
        if not path.exists():
            raise CheckpointError(f"{f} names {path.name} but the folder lacks it; re-download the policy folder")
        try:
            out.update(load_file(str(path)))
        except (SafetensorError, OSError, RuntimeError, ValueError) as e:
            raise CheckpointError(f"normalisation file {path} is corrupt ({_first_line(e)}); re-download it") from None
    return out


def read_smolvla_stats(folder: str | Path, weights: Mapping[str, torch.Tensor] | None = None
                       ) -> dict[str, dict[str, torch.Tensor]]:
    """``{"observation.state": {"mean", "std", ...}, "action": {...}}`` from the policy processors' state files
    (lerobot 0.4), else from the legacy ``normalize_inputs.*`` / ``unnormalize_outputs.*`` weights."""
    d = Path(folder).expanduser()
    flat = _processor_stats(d, "policy_preprocessor", "normalizer_processor")
    flat.update({k: v for k, v in _processor_stats(d, "policy_postprocessor", "unnormalizer_processor").items()
                 if k.startswith("action.")})
    stats: dict[str, dict[str, torch.Tensor]] = {}
    for k, v in flat.items():
        key, stat = k.rsplit(".", 1)
        stats.setdefault(key, {})[stat] = v.float()
    if not stats and weights is not None:  # lerobot < 0.4: buffers inside the model
        for k, v in weights.items():
            m = re.match(r"(?:normalize_inputs|normalize_targets|unnormalize_outputs)\.buffer_(.+)\.(\w+)$", k)
            if m:
                key = {"observation_state": "observation.state"}.get(m.group(1), m.group(1).replace("_", "."))
                stats.setdefault(key, {}).setdefault(m.group(2), v.float())
    return stats


def _vlm_folder(data: Mapping[str, Any], vlm: str | Path | None) -> Path:
    """The VLM folder with the config and tokenizer: ``vlm``, else ``vlm_model_name`` (local or in the HF cache)."""
    ref = str(vlm if vlm is not None else data["vlm_model_name"])
    p = Path(ref).expanduser()
    if p.is_dir():
        if not (p / "config.json").exists():
            raise CheckpointError(f"VLM folder {p} has no config.json; give the SmolVLM folder SmolVLA was built on")
        return p
    if vlm is None and ref.count("/") == 1:
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(ref, "config.json")
        except Exception:  # noqa: BLE001 - an odd id or cache: not cached
            cached = None
        if isinstance(cached, str):
            return Path(cached).parent
    raise CheckpointError(f"the SmolVLA policy's VLM {ref!r} (its config and tokenizer) is not a local folder nor in "
                          f"the Hugging Face cache; pass vlm=<a local folder of {ref}>")


def _vlm_config(folder: Path) -> Any:
    tf = _import_transformers()
    try:
        conf = tf.AutoConfig.from_pretrained(str(folder), trust_remote_code=False)
    except Exception as e:  # noqa: BLE001 - a broken config.json: one user message
        raise CheckpointError(f"VLM folder {folder}: config.json is unreadable ({_first_line(e)})") from None
    if getattr(conf, "model_type", None) not in ("smolvlm", "idefics3"):
        raise CheckpointError(f"VLM folder {folder} holds a {getattr(conf, 'model_type', '?')!r} model, not SmolVLM "
                              f"(smolvlm / idefics3); give the VLM SmolVLA was built on")
    return conf


def _layers(state: Mapping[str, torch.Tensor], prefix: str) -> int:
    return 1 + max((int(m.group(1)) for k in state if (m := re.match(re.escape(prefix) + r"layers\.(\d+)\.", k))),
                   default=-1)


def _need(state: Mapping[str, torch.Tensor], key: str) -> torch.Tensor:
    if key not in state:
        raise CheckpointError(f"the SmolVLA weights lack {key}; the download is incomplete or not SmolVLA")
    return state[key]


def _norm_mode(data: Mapping[str, Any]) -> str:
    nm = data.get("normalization_mapping") or {"VISUAL": "IDENTITY", "STATE": "MEAN_STD", "ACTION": "MEAN_STD"}
    if str(nm.get("VISUAL", "IDENTITY")) != "IDENTITY":
        raise CheckpointError(f"normalization_mapping VISUAL {nm['VISUAL']!r} is not supported (SmolVLA's is IDENTITY)")
    state, action = str(nm.get("STATE", "MEAN_STD")), str(nm.get("ACTION", "MEAN_STD"))
    if state != action or action not in _MODES:
        raise CheckpointError(f"normalization_mapping STATE {state!r} / ACTION {action!r}: this loader needs one mode "
                              f"for both, one of {', '.join(_MODES)}")
    return _MODES[action]


def _features(data: Mapping[str, Any]) -> tuple[list[str], int, int]:
    """(camera keys in order, state size, action size) from the config's features."""
    inputs, outputs = data["input_features"], data["output_features"]
    cams = [k for k, v in inputs.items() if (v or {}).get("type") == "VISUAL"]
    if not cams:
        raise CheckpointError("the SmolVLA config has no VISUAL input feature; SmolVLA needs a camera")
    state = [v for k, v in inputs.items() if (v or {}).get("type") == "STATE"]
    if len(state) != 1 or "observation.state" not in inputs:
        raise CheckpointError("the SmolVLA config needs exactly one STATE input, observation.state")
    action = outputs.get("action")
    if not action or not action.get("shape"):
        raise CheckpointError("the SmolVLA config has no action output feature with a shape")
    return cams, int(state[0]["shape"][-1]), int(action["shape"][-1])


# ------------------------------------------------------------------------------------------------
# The model
# ------------------------------------------------------------------------------------------------
def load_smolvla(folder: str | Path, vlm: str | Path | None = None, cls: type | None = None,
                 map_location: str | torch.device = "cpu") -> nn.Module:
    """Build a ``SmolVLAWrapper`` (or ``cls``, a subclass) from a LeRobot SmolVLA folder; see the module docstring.
    LeRobot's ``freeze_vision_encoder`` / ``train_expert_only`` become the model's frozen parts."""
    d = Path(folder).expanduser()
    data = read_smolvla_config(d)
    state = read_smolvla_weights(d)
    stats = read_smolvla_stats(d, state)
    state = {k: v for k, v in state.items() if not k.startswith(_LEGACY_STATS)}
    cams, state_dim, action_dim = _features(data)
    max_state, max_action = int(data["max_state_dim"]), int(data["max_action_dim"])
    if state_dim > max_state or action_dim > max_action:
        raise CheckpointError(f"the SmolVLA config's state / action ({state_dim} / {action_dim}) exceed max_state_dim / "
                              f"max_action_dim ({max_state} / {max_action}); the config is inconsistent")
    mode = _norm_mode(data)

    vlm_dir = _vlm_folder(data, vlm)
    vlm_conf = _vlm_config(vlm_dir)
    tokenizer = read_tokenizer(vlm_dir, "VLM folder", f"copy the tokenizer files of {data['vlm_model_name']} into it")

    n_vlm = _layers(state, _P + "vlm.model.text_model.")
    n_expert = _layers(state, _P + "lm_expert.")
    if n_vlm < 1 or n_expert < 1:
        raise CheckpointError(f"the SmolVLA weights have {n_vlm} VLM and {n_expert} expert layers; the download is "
                              f"incomplete or not SmolVLA")
    width = int(_need(state, "model.action_in_proj.weight").shape[0])
    text_conf = copy.deepcopy(vlm_conf.text_config)
    text_conf.num_hidden_layers = n_vlm
    if isinstance(getattr(text_conf, "layer_types", None), list):
        text_conf.layer_types = text_conf.layer_types[:n_vlm]
    text_conf.tie_word_embeddings = (_P + "vlm.lm_head.weight") not in state
    vlm_conf.vla_image_mean, vlm_conf.vla_image_std = [0.5] * 3, [0.5] * 3  # SmolVLA: pixels * 2 - 1
    side = int(vlm_conf.vision_config.image_size)
    pad = data.get("resize_imgs_with_padding")
    if pad is not None and (len(pad) != 2 or int(pad[0]) != int(pad[1]) or int(pad[0]) != side):
        raise CheckpointError(f"resize_imgs_with_padding {list(pad)} is not the VLM's square image size {side}; this "
                              f"loader supports SmolVLA's images resized (with padding) to the vision tower's size")
    mode_attn = str(data.get("attention_mode", "cross_attn"))
    every = int(data.get("self_attn_every_n_layers", 2))
    self_every = 1 if mode_attn == "self_attn" else max(every, 0)
    fields = dict(
        vision_encoder="smolvlm", llm="smolvlm", projector="identity", image_size=side,
        image_resize="pad" if pad is not None else "stretch", prompt_format="smolvla",
        max_text_tokens=int(data.get("tokenizer_max_length", 48)), action_head="smolvla-expert",
        head=dict(hidden_dim=width, num_layers=n_expert, num_inference_steps=int(data.get("num_steps", 10)),
                  max_action_dim=max_action, self_attn_every=self_every,
                  min_period=float(data.get("min_period", 4e-3)), max_period=float(data.get("max_period", 4.0))),
        action_dim=action_dim, state_dim=state_dim, chunk_size=int(data["chunk_size"]),
        n_action_steps=int(data.get("n_action_steps", data["chunk_size"])), image_keys=cams,
        normalization=mode, random_shift=0, dropout=0.0)
    model = build_empty(fields, cls, SmolVLAWrapper, d, "SmolVLA", tokenizer=tokenizer, llm_hf_config=text_conf,
                        vision_hf_config=vlm_conf)

    mapped: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        for old, new in _RENAMES:
            if k.startswith(old):
                mapped[new + k[len(old):]] = v
                break
        else:
            raise CheckpointError(f"the SmolVLA weights have a tensor this loader does not know ({k}); not a SmolVLA "
                                  f"checkpoint of lerobot 0.4")
    w = mapped.get("state_proj.weight")
    if w is not None:
        if w.shape[-1] != max_state:
            raise CheckpointError(f"model.state_proj.weight reads {w.shape[-1]} values but max_state_dim is {max_state}; "
                                  f"config.json does not describe these weights")
        mapped["state_proj.weight"] = w[:, :state_dim].contiguous()  # the zero-padded entries never count
    _load_strict(model, mapped)
    model.freeze_vision(bool(data.get("freeze_vision_encoder", True)))
    model.freeze_vlm(bool(data.get("train_expert_only", True)))
    _set_stats(model, stats, mode, d)
    model.lerobot_vlm = str(vlm_dir)
    return model.to(map_location).eval()


def _load_strict(model: nn.Module, mapped: dict[str, torch.Tensor]) -> None:
    tied = {"backbone.lm.lm_head.weight"} if getattr(model.backbone.hf_config, "tie_word_embeddings", False) else set()
    load_mapped_strict(model, mapped, source="SmolVLA", describes="config.json / the VLM config",
                       own_prefixes=_OWN_WEIGHTS, tied=tied)


def _set_stats(model: nn.Module, stats: Mapping[str, Mapping[str, torch.Tensor]], mode: str, d: Path) -> None:
    if mode == "none":
        return
    want = ["action"] + (["observation.state"] if model.config.state_dim > 0 else [])
    lacking = [k for k in want if k not in stats]
    if lacking:
        log.warning("SmolVLA folder %s has no normalisation statistics for %s; set them with model.set_normalization "
                    "before use", d, ", ".join(lacking))
        return
    try:
        model.set_normalization({k: dict(stats[k]) for k in want})
    except ValueError as e:
        raise CheckpointError(f"the SmolVLA folder's normalisation statistics do not fit its features "
                              f"({_first_line(e)})") from None
