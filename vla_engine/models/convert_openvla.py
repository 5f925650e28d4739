"""Load a published OpenVLA checkpoint folder (the Hugging Face ``openvla/openvla-7b`` format, Prismatic's
``OpenVLAForActionPrediction``) as an ``OpenVLAWrapper`` that acts like it.

The folder holds ``config.json`` (``model_type: openvla``: timm ids of the two vision towers, the Llama
``text_config``, ``n_action_bins``, per-dataset ``norm_stats``), the weights (``model.safetensors``, or
shards with ``model.safetensors.index.json``) and the Llama tokenizer files. Nothing is imported from the
folder (no remote code, no pickles): the weights are read with safetensors and mapped by name.

    timm DINOv2 with registers  vision_backbone.featurizer.*        -> transformers Dinov2WithRegistersModel
    timm SigLIP ViT             vision_backbone.fused_featurizer.*  -> transformers SiglipVisionModel
    fused-gelu-mlp              projector.fc1/fc2/fc3               -> FusedGeluMLPProjector (same names)
    Llama causal LM             language_model.*                    -> the LlamaBackbone's LlamaForCausalLM

The towers' fused ``qkv`` is split into query / key / value; DINOv2's LayerScale (``ls1/ls2.scale_factor``,
timm's ``gamma``) becomes ``layer_scale1/2.lambda1``; timm's patch-only position table (``no_embed_class``:
its CLS token already carries its position) gets a zero row for the CLS token. Widths, depths, patch and
MLP sizes come from the weights; the attention head counts from the timm architecture names (heads cannot
be read off the weights). The SigLIP attention-pool head (``attn_pool.*``), which OpenVLA never runs, is
not kept.

The model it builds is OpenVLA's: features of each tower's second-to-last block (``vision.feature_layer:
-2``), its prompt ``In: What action should the robot take to {task}?\\nOut:`` plus the empty token
(``prompt_format: openvla``), 7 tokens decoded greedily over the whole vocabulary from its tail
(``head.token_ids: vocab_tail``), un-normalised with the dataset's q01 / q99 where its mask is set
(``normalization: min_max`` with min / max = q01 / q99, and -1 / 1 where the mask is off, which leaves those
dimensions, the gripper, as decoded).

    model = OpenVLAWrapper.from_openvla("openvla-7b", unnorm_key="bridge_orig")
    action = model.select_action(model.prepare_observation({"pixels": rgb}, "pick up the cup"))
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from ..errors import CheckpointError
from ..registry import LANGUAGE_MODELS
from ._convert import build_empty, load_mapped_strict, read_folder_config, read_tokenizer
from ._util import _first_line, _import_transformers
from .formats import is_openvla_config
from .vision import IMAGENET_MEAN, IMAGENET_STD
from .wrappers import OpenVLAWrapper

log = logging.getLogger(__name__)

__all__ = ["is_openvla_config", "read_openvla_config", "read_openvla_weights", "load_openvla", "timm_vit_heads",
           "norm_stats_for"]

FIX = "give a folder of the openvla/openvla-7b format (config.json, safetensors weights, tokenizer files)"

# timm ViT size name -> attention heads (vit_{size}_patch..); whole names where the size name is not enough
_TIMM_VIT_HEADS = {"tiny": 3, "small": 6, "medium": 8, "base": 12, "large": 16, "huge": 16, "giant": 16,
                   "gigantic": 16, "so150m": 16, "so400m": 16}
_TIMM_VIT_HEADS_BY_ARCH = {"vit_giant_patch14_dinov2": 24, "vit_giant_patch14_reg4_dinov2": 24}
# timm_override_act_layers entry -> transformers activation name (None: timm's default, exact GELU)
_ACTIVATIONS = {None: "gelu", "gelu": "gelu", "quick_gelu": "quick_gelu", "gelu_tanh": "gelu_pytorch_tanh"}
# checkpoint keys OpenVLA never uses (timm heads kept by its featurizers) and that are not kept
_UNUSED_TOWER_KEYS = ("attn_pool.", "head.", "fc_norm.")
# model weights that are vla_engine's own (no OpenVLA counterpart): they keep their initial values
_OWN_WEIGHTS = ("action_query", "action_head.", "action_normalizer.", "state_normalizer.", "camera_embed",
                "obs_step_embed", "state_proj.")


# ------------------------------------------------------------------------------------------------
# Reading the folder
# ------------------------------------------------------------------------------------------------
def read_openvla_config(folder: str | Path) -> dict[str, Any]:
    """The folder's config.json, checked to be an OpenVLA config with what this loader needs."""
    f, data = read_folder_config(folder, "OpenVLA", FIX)
    if not is_openvla_config(data):
        mt = data.get("model_type") if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(f"{f} is not an OpenVLA config (model_type {mt!r}, not 'openvla'); {FIX}, or load a "
                              f"vla_engine checkpoint with VLAModel.from_pretrained")
    missing = [k for k in ("timm_model_ids", "image_sizes", "text_config", "norm_stats") if not data.get(k)]
    if missing:
        raise CheckpointError(f"{f} lacks {', '.join(missing)}; it is not a complete OpenVLA config, re-download it")
    if not data.get("use_fused_vision_backbone", len(data["timm_model_ids"]) > 1):
        raise CheckpointError(f"{f}: single-tower backbones ({data.get('vision_backbone_id')!r}) are not supported; "
                              f"this loader reads the fused DINOv2 + SigLIP OpenVLA models (dinosiglip)")
    ids = [str(i).lower() for i in data["timm_model_ids"]]
    if len(ids) != 2 or "dinov2" not in ids[0] or "siglip" not in ids[1]:
        raise CheckpointError(f"{f}: timm_model_ids {data['timm_model_ids']} are not a DINOv2 + SigLIP pair; "
                              f"this loader reads the fused dinosiglip OpenVLA models")
    arch = str(data.get("arch_specifier", "no-align+fused-gelu-mlp"))
    if not arch.endswith("fused-gelu-mlp"):
        raise CheckpointError(f"{f}: arch_specifier {arch!r} is not supported; this loader reads the "
                              f"'fused-gelu-mlp' projector of OpenVLA")
    sizes = data["image_sizes"]
    if len(set(int(s) for s in sizes)) != 1:
        raise CheckpointError(f"{f}: image_sizes {sizes} differ between the towers; both must see the same size")
    strategy = data.get("image_resize_strategy", "resize-naive")
    if strategy != "resize-naive":
        log.warning("%s uses image_resize_strategy %r; images are resized naively (squashed) to %s px here",
                    f, strategy, sizes[0])
    return data


def read_openvla_weights(folder: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of ``model.safetensors``, or of the shards named by ``model.safetensors.index.json``."""
    from safetensors import SafetensorError, safe_open

    d = Path(folder).expanduser()
    index = d / "model.safetensors.index.json"
    if index.exists():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
            if not isinstance(weight_map, dict) or not weight_map:
                raise ValueError("weight_map is empty")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{index} is corrupt ({_first_line(e)}); re-download it") from None
        files: dict[str, list[str]] = {}
        for key, name in weight_map.items():
            files.setdefault(str(name), []).append(key)
    elif (d / "model.safetensors").exists():
        files = {"model.safetensors": []}
    else:
        other = sorted(p.name for p in d.glob("*.bin")) + sorted(p.name for p in d.glob("*.pt"))
        hint = f" (it has {other[0]}: pickled weights are not read; convert them to safetensors)" if other else ""
        raise CheckpointError(f"OpenVLA folder {d} has no model.safetensors or model.safetensors.index.json{hint}; "
                              f"{FIX}")
    state: dict[str, torch.Tensor] = {}
    for name, keys in files.items():
        path = d / name
        if not path.exists():
            raise CheckpointError(f"OpenVLA folder {d} lacks the weight shard {name} named by its index; "
                                  f"download every model-*.safetensors file")
        try:
            with safe_open(str(path), framework="pt", device="cpu") as sf:
                have = set(sf.keys())
                lost = [k for k in keys if k not in have]
                if lost:
                    raise CheckpointError(f"weight shard {path} lacks {len(lost)} tensors its index names (e.g. "
                                          f"{lost[0]}); re-download it")
                for k in have:
                    state[k] = sf.get_tensor(k)
        except (SafetensorError, OSError, RuntimeError, ValueError) as e:
            if isinstance(e, CheckpointError):
                raise
            raise CheckpointError(f"weight file {path} is corrupt ({_first_line(e)}); re-download it") from None
    return state


def norm_stats_for(data: Mapping[str, Any], unnorm_key: str | None = None) -> tuple[str, dict[str, Any]]:
    """``(dataset name, its action statistics)`` from the config's ``norm_stats``; ``unnorm_key`` chooses the
    dataset when there are several."""
    stats = data.get("norm_stats") or {}
    names = sorted(stats)
    if unnorm_key is None:
        if len(names) != 1:
            raise CheckpointError(f"this OpenVLA model has action statistics for {len(names)} datasets; pass "
                                  f"unnorm_key= one of: {', '.join(names)}")
        unnorm_key = names[0]
    if unnorm_key not in stats:
        raise CheckpointError(f"unnorm_key {unnorm_key!r} is not in this OpenVLA model's norm_stats; choose one of: "
                              f"{', '.join(names)}")
    action = (stats[unnorm_key] or {}).get("action")
    need = [k for k in ("q01", "q99") if not isinstance(action, dict) or k not in action]
    if need:
        raise CheckpointError(f"norm_stats[{unnorm_key!r}] has no action {', '.join(need)}; re-download config.json")
    return unnorm_key, dict(action)


def timm_vit_heads(model_id: str, width: int) -> int:
    """Attention heads of a timm ViT from its architecture name (``vit_large_patch14_reg4_dinov2.lvd142m``: 16)."""
    arch = str(model_id).split(".")[0]
    heads = _TIMM_VIT_HEADS_BY_ARCH.get(arch)
    if heads is None:
        m = re.match(r"vit_([a-z0-9]+)_patch", arch)
        heads = _TIMM_VIT_HEADS.get(m.group(1)) if m else None
    if heads is None:
        raise CheckpointError(f"timm model {model_id!r}: its attention head count is not known (not a vit_<size>_patch.. "
                              f"name of sizes {', '.join(_TIMM_VIT_HEADS)})")
    if width % heads:
        raise CheckpointError(f"timm model {model_id!r} has {heads} heads but its weights are {width} wide (not a "
                              f"multiple); the weights do not belong to that architecture")
    return heads


# ------------------------------------------------------------------------------------------------
# timm towers -> transformers towers
# ------------------------------------------------------------------------------------------------
def _tower(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not sub:
        raise CheckpointError(f"the OpenVLA weights have no {prefix}* tensors; the download is incomplete or not OpenVLA")
    return sub


def _need(sub: dict[str, torch.Tensor], key: str, where: str) -> torch.Tensor:
    if key not in sub:
        raise CheckpointError(f"the OpenVLA weights lack {where}{key}; the download is incomplete or not OpenVLA")
    return sub.pop(key)


def _tower_shape(sub: dict[str, torch.Tensor], where: str) -> tuple[int, int, int, int]:
    """(width, depth, patch size, MLP width) of a timm ViT's weights."""
    proj = sub.get("patch_embed.proj.weight")
    if proj is None or proj.ndim != 4:
        raise CheckpointError(f"the OpenVLA weights lack {where}patch_embed.proj.weight (a conv kernel); not a timm ViT")
    depth = 1 + max((int(m.group(1)) for k in sub if (m := re.match(r"blocks\.(\d+)\.", k))), default=-1)
    if depth < 2:
        raise CheckpointError(f"{where}: {depth} transformer blocks; OpenVLA reads the second-to-last, so at least 2")
    if "blocks.0.mlp.fc1.weight" not in sub:
        raise CheckpointError(f"{where}blocks.0.mlp.fc1.weight is missing (a SwiGLU MLP?); only timm's plain MLP "
                              f"blocks are supported")
    return int(proj.shape[0]), depth, int(proj.shape[-1]), int(sub["blocks.0.mlp.fc1.weight"].shape[0])


def _mlp_ratio(width: int, hidden: int) -> float:
    r = hidden / width
    return r if int(width * r) == hidden else (hidden + 0.5) / width  # transformers takes int(width * ratio)


def _block(sub: dict[str, torch.Tensor], i: int, where: str) -> dict[str, torch.Tensor]:
    """Block i's tensors (timm names) with qkv split into q / k / v; LayerScale as 'ls1' / 'ls2' (or absent)."""
    b = f"blocks.{i}."
    out = {n: _need(sub, b + n, where) for n in ("norm1.weight", "norm1.bias", "attn.proj.weight", "attn.proj.bias",
                                                "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias",
                                                "mlp.fc2.weight", "mlp.fc2.bias")}
    qkv_w = _need(sub, b + "attn.qkv.weight", where)
    qkv_b = sub.pop(b + "attn.qkv.bias", None)
    if qkv_w.shape[0] % 3:
        raise CheckpointError(f"{where}{b}attn.qkv.weight has {qkv_w.shape[0]} rows, not 3 x width")
    for name, w, bias in zip("qkv", qkv_w.chunk(3, dim=0),
                             qkv_b.chunk(3, dim=0) if qkv_b is not None else (None,) * 3):
        out[f"{name}.weight"] = w
        out[f"{name}.bias"] = bias if bias is not None else torch.zeros(w.shape[0], dtype=w.dtype)
    for ls in ("ls1", "ls2"):  # OpenVLA renames timm's LayerScale gamma to scale_factor
        for leaf in ("scale_factor", "gamma"):
            if b + f"{ls}.{leaf}" in sub:
                out[ls] = sub.pop(b + f"{ls}.{leaf}")
    return out


def _check_rest(sub: dict[str, torch.Tensor], where: str) -> None:
    rest = [k for k in sub if not k.startswith(_UNUSED_TOWER_KEYS)]
    if rest:
        raise CheckpointError(f"the OpenVLA weights have {len(rest)} {where}* tensors this loader does not know "
                              f"(e.g. {where}{rest[0]}); not the timm ViT OpenVLA uses")


def dinov2_from_timm(sub: dict[str, torch.Tensor], model_id: str, image_size: int, act: str,
                     where: str) -> tuple[Any, dict[str, torch.Tensor]]:
    """A timm DINOv2(-with-registers) ViT's weights -> (``Dinov2WithRegistersConfig``, its state dict)."""
    tf = _import_transformers()
    sub = dict(sub)
    width, depth, patch, hidden = _tower_shape(sub, where)
    grid = image_size // patch
    n = grid * grid
    cls = _need(sub, "cls_token", where)  # (1, 1, D)
    reg = sub.pop("reg_token", None)  # (1, R, D) or absent
    n_reg = int(reg.shape[1]) if reg is not None else 0
    reg = reg if reg is not None else cls.new_zeros(1, 0, width)
    pos = _need(sub, "pos_embed", where)  # (1, n [+ 1 [+ R]], D)
    extra = int(pos.shape[1]) - n
    if extra == 0:  # timm no_embed_class (DINOv2 with registers): the CLS token carries its own position
        pos = torch.cat([pos.new_zeros(1, 1, width), pos], dim=1)
    elif extra == 1 + n_reg and n_reg:  # positions for CLS and registers: fold the registers' into their tokens
        reg = reg + pos[:, 1:1 + n_reg]
        pos = torch.cat([pos[:, :1], pos[:, 1 + n_reg:]], dim=1)
    elif extra != 1:
        raise CheckpointError(f"{where}pos_embed has {pos.shape[1]} positions but {image_size} px images in "
                              f"{patch} px patches give {n}; image_sizes in config.json does not fit the weights")
    conf = tf.Dinov2WithRegistersConfig(
        hidden_size=width, num_hidden_layers=depth, num_attention_heads=timm_vit_heads(model_id, width),
        mlp_ratio=_mlp_ratio(width, hidden), hidden_act=act, layer_norm_eps=1e-6, image_size=image_size,
        patch_size=patch, num_register_tokens=n_reg, qkv_bias=True, layerscale_value=1.0, use_swiglu_ffn=False)
    conf.vla_image_mean, conf.vla_image_std = list(IMAGENET_MEAN), list(IMAGENET_STD)
    out = {"embeddings.cls_token": cls, "embeddings.register_tokens": reg, "embeddings.position_embeddings": pos,
           "embeddings.mask_token": cls.new_zeros(1, width),
           "embeddings.patch_embeddings.projection.weight": _need(sub, "patch_embed.proj.weight", where),
           "embeddings.patch_embeddings.projection.bias": _need(sub, "patch_embed.proj.bias", where),
           "layernorm.weight": _need(sub, "norm.weight", where), "layernorm.bias": _need(sub, "norm.bias", where)}
    for i in range(depth):
        t = _block(sub, i, where)
        h = f"encoder.layer.{i}."
        for a, b in (("norm1", "norm1"), ("norm2", "norm2"), ("mlp.fc1", "mlp.fc1"), ("mlp.fc2", "mlp.fc2"),
                     ("attn.proj", "attention.output.dense"), ("q", "attention.attention.query"),
                     ("k", "attention.attention.key"), ("v", "attention.attention.value")):
            out[h + b + ".weight"], out[h + b + ".bias"] = t[a + ".weight"], t[a + ".bias"]
        for ls, name in (("ls1", "layer_scale1"), ("ls2", "layer_scale2")):
            out[h + name + ".lambda1"] = t.get(ls, torch.ones(width))  # no LayerScale: scale 1
    _check_rest(sub, where)
    return conf, out


def siglip_from_timm(sub: dict[str, torch.Tensor], model_id: str, image_size: int, act: str,
                     where: str) -> tuple[Any, dict[str, torch.Tensor]]:
    """A timm SigLIP ViT's weights -> (``SiglipVisionConfig``, its ``SiglipVisionModel`` state dict)."""
    tf = _import_transformers()
    sub = dict(sub)
    width, depth, patch, hidden = _tower_shape(sub, where)
    if "cls_token" in sub or "reg_token" in sub:
        raise CheckpointError(f"{where} has a CLS / register token; a SigLIP tower has none")
    n = (image_size // patch) ** 2
    pos = _need(sub, "pos_embed", where)
    if pos.shape[1] != n:
        raise CheckpointError(f"{where}pos_embed has {pos.shape[1]} positions but {image_size} px images in {patch} px "
                              f"patches give {n}; image_sizes in config.json does not fit the weights")
    conf = tf.SiglipVisionConfig(
        hidden_size=width, intermediate_size=hidden, num_hidden_layers=depth,
        num_attention_heads=timm_vit_heads(model_id, width), image_size=image_size, patch_size=patch,
        hidden_act=act, layer_norm_eps=1e-6, vision_use_head=False)
    conf.vla_image_mean, conf.vla_image_std = [0.5] * 3, [0.5] * 3
    v = "vision_model."
    out = {v + "embeddings.patch_embedding.weight": _need(sub, "patch_embed.proj.weight", where),
           v + "embeddings.patch_embedding.bias": _need(sub, "patch_embed.proj.bias", where),
           v + "embeddings.position_embedding.weight": pos[0],
           v + "post_layernorm.weight": _need(sub, "norm.weight", where),
           v + "post_layernorm.bias": _need(sub, "norm.bias", where)}
    for i in range(depth):
        t = _block(sub, i, where)
        for ls, lin in (("ls1", "attn.proj"), ("ls2", "mlp.fc2")):  # LayerScale folds into the linear before it
            if ls in t:
                g = t[ls].to(t[lin + ".weight"].dtype)
                t[lin + ".weight"], t[lin + ".bias"] = t[lin + ".weight"] * g[:, None], t[lin + ".bias"] * g
        h = f"{v}encoder.layers.{i}."
        for a, b in (("norm1", "layer_norm1"), ("norm2", "layer_norm2"), ("mlp.fc1", "mlp.fc1"), ("mlp.fc2", "mlp.fc2"),
                     ("attn.proj", "self_attn.out_proj"), ("q", "self_attn.q_proj"), ("k", "self_attn.k_proj"),
                     ("v", "self_attn.v_proj")):
            out[h + b + ".weight"], out[h + b + ".bias"] = t[a + ".weight"], t[a + ".bias"]
    _check_rest(sub, where)
    return conf, out


# ------------------------------------------------------------------------------------------------
# The model
# ------------------------------------------------------------------------------------------------
def _activation(data: Mapping[str, Any], i: int) -> str:
    acts = list(data.get("timm_override_act_layers") or [None, None])
    act = acts[i] if i < len(acts) else None
    if act not in _ACTIVATIONS:
        raise CheckpointError(f"timm_override_act_layers[{i}] is {act!r}; supported: "
                              f"{', '.join(str(a) for a in _ACTIVATIONS)}")
    return _ACTIVATIONS[act]


def _llm_config(data: Mapping[str, Any]) -> tuple[str, Any]:
    tf = _import_transformers()
    text = dict(data["text_config"])
    mt = text.pop("model_type", "llama")
    if mt not in ("llama", "qwen2") or mt not in LANGUAGE_MODELS:
        raise CheckpointError(f"the OpenVLA text_config is a {mt!r} model; this loader reads Llama-based OpenVLA models")
    for k in ("torch_dtype", "dtype", "_name_or_path", "transformers_version"):
        text.pop(k, None)  # built in float32 here (a bfloat16 checkpoint is upcast as it loads)
    try:
        conf = tf.AutoConfig.for_model(mt, **text)
    except Exception as e:  # noqa: BLE001 - a bad text_config field: one user message
        raise CheckpointError(f"the OpenVLA text_config does not make a {mt} config ({_first_line(e)})") from None
    return mt, conf


def load_openvla(folder: str | Path, unnorm_key: str | None = None, cls: type | None = None,
                 map_location: str | torch.device = "cpu") -> nn.Module:
    """Build an ``OpenVLAWrapper`` (or ``cls``, a subclass) from an OpenVLA folder; see the module docstring."""
    d = Path(folder).expanduser()
    data = read_openvla_config(d)
    name, action = norm_stats_for(data, unnorm_key)
    state = read_openvla_weights(d)
    size = int(data["image_sizes"][0])
    ids = data["timm_model_ids"]
    dino_conf, dino_sd = dinov2_from_timm(_tower(state, "vision_backbone.featurizer."), ids[0], size, _activation(data, 0),
                                          "vision_backbone.featurizer.")
    sig_conf, sig_sd = siglip_from_timm(_tower(state, "vision_backbone.fused_featurizer."), ids[1], size,
                                        _activation(data, 1), "vision_backbone.fused_featurizer.")
    dino_conf.vla_fused_siglip = sig_conf.to_dict()  # how DinoSiglipEncoder rebuilds both towers from one config
    llm, llm_conf = _llm_config(data)
    tokenizer = read_tokenizer(d, "OpenVLA folder", "copy the tokenizer files of openvla/openvla-7b into it "
                               "(tokenizer.json / tokenizer.model)")
    vocab = int(tokenizer.vocab_size)
    derived = int(llm_conf.vocab_size) - int(data.get("pad_to_multiple_of") or 0)
    if data.get("pad_to_multiple_of") and derived != vocab:
        log.warning("%s: the tokenizer has %d ids but OpenVLA's config implies %d (text vocab - pad_to_multiple_of); "
                    "action tokens are the tokenizer's last %s ids", d, vocab, derived, data.get("n_action_bins", 256))
    q01 = torch.tensor(action["q01"], dtype=torch.float64)
    heads = timm_vit_heads(ids[0], dino_conf.hidden_size)
    fused = dino_conf.hidden_size + sig_conf.hidden_size
    fields = dict(
        vision_encoder="dinosiglip", image_size=size,
        vision=dict(dim=fused, num_layers=dino_conf.num_hidden_layers, num_heads=heads if fused % heads == 0 else 1,
                    patch_size=dino_conf.patch_size, feature_layer=-2), projector="fused-gelu-mlp", llm=llm, max_text_tokens=256, prompt_format="openvla",
        action_head="tokens", head=dict(bins=int(data.get("n_action_bins", 256)), token_ids="vocab_tail"),
        action_dim=int(q01.numel()), state_dim=0, chunk_size=1, n_action_steps=1, normalization="min_max",
        random_shift=0)
    model = build_empty(fields, cls, OpenVLAWrapper, d, "OpenVLA", tokenizer=tokenizer, llm_hf_config=llm_conf,
                        vision_hf_config=dino_conf)

    mapped = {f"vision_encoder.dino.model.{k}": v for k, v in dino_sd.items()}
    mapped.update({f"vision_encoder.siglip.model.{k}": v for k, v in sig_sd.items()})
    proj = {k: v for k, v in state.items() if k.startswith("projector.")}
    mapped.update(proj)
    lm_prefix = "language_model."
    mapped.update({"backbone.lm." + k[len(lm_prefix):]: v for k, v in state.items() if k.startswith(lm_prefix)})
    known = ("vision_backbone.featurizer.", "vision_backbone.fused_featurizer.", "projector.", lm_prefix)
    stray = [k for k in state if not k.startswith(known)]
    if stray:
        raise CheckpointError(f"the OpenVLA weights have {len(stray)} tensors outside vision_backbone / projector / "
                              f"language_model (e.g. {stray[0]}); not an OpenVLA checkpoint this loader knows")
    _load_strict(model, mapped, llm_conf)
    mask, q99 = _mask(action, q01), torch.tensor(action["q99"], dtype=torch.float64)
    # min_max un-normalisation with min / max = q01 / q99 is OpenVLA's; -1 / 1 leaves unmasked dimensions as decoded
    stats = {"min": torch.where(mask, q01, -1.0), "max": torch.where(mask, q99, 1.0)}
    stats.update({k: action[k] for k in ("mean", "std") if k in action})
    model.set_normalization({"action": stats})
    model.openvla_unnorm_key = name
    return model.to(map_location).eval()


def _mask(action: Mapping[str, Any], q01: torch.Tensor) -> torch.Tensor:
    m = action.get("mask")
    return torch.ones_like(q01, dtype=torch.bool) if m is None else torch.tensor([bool(x) for x in m])


def _load_strict(model: nn.Module, mapped: dict[str, torch.Tensor], llm_conf: Any) -> None:
    """Load the mapped checkpoint: every model weight from it (but vla_engine's own parts), shapes checked."""
    tied = {"backbone.lm.lm_head.weight"} if getattr(llm_conf, "tie_word_embeddings", False) else set()
    load_mapped_strict(model, mapped, source="OpenVLA", describes="config.json", own_prefixes=_OWN_WEIGHTS, tied=tied)

