"""Facts about a VLA model before it trains: tokens per sample, a training-memory estimate, parameter
counts per part, the module tree, and one probing forward pass (shapes, loss, inference latency).

    from vla_engine.models import VLAModel
    from vla_engine.models.inspect import estimate_training_memory, forward_probe, synthetic_batch
    model = VLAModel(cfg)
    mem = estimate_training_memory(cfg, model.num_parameters(), model.num_parameters(True), 64, model=model)
    probe = forward_probe(model, synthetic_batch(cfg))
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any

from ..config.base import ConfigError

PRECISIONS = {"fp32": 4, "bf16-mixed": 2, "fp16-mixed": 2}  # bytes per activation value
PARTS = ("vision_encoder", "projector", "backbone", "action_head")
_NOT_INPUTS = ("index", "frame_index", "episode_index", "task_index", "timestamp")


def vision_tokens(cfg: Any, model: Any = None) -> int:
    """Image tokens per camera and step that reach the LM for ``cfg`` (read from ``model`` when built:
    the encoder's ``num_tokens`` after the projector, which may pool them to ``projection.num_tokens``)."""
    if model is not None:
        n = getattr(getattr(model, "vision_encoder", None), "num_tokens", None)
        proj = getattr(model, "projector", None)
        if n and hasattr(proj, "output_tokens"):
            n = proj.output_tokens(n)
        if n:
            return int(n)
    if cfg.projector in ("attention", "perceiver"):
        return cfg.projection.num_tokens
    s = cfg.image_size
    vision = cfg.vision.to_dict() if cfg.vision is not None else {}  # the chosen encoder's settings
    if cfg.vision_encoder == "cnn":
        return vision["pool"] ** 2 if vision["pool"] else max(1, (s // 16) ** 2)
    if cfg.vision_encoder in ("siglip", "clip", "dinosiglip"):
        return max(1, (s // vision["patch_size"]) ** 2)
    if cfg.vision_encoder == "dinov2":
        return max(1, (s // vision["patch_size"]) ** 2) + 1
    if cfg.vision_encoder.startswith("resnet"):
        return max(1, -(-s // 32) ** 2)
    return 16


def image_tokens_per_sample(cfg: Any, model: Any = None) -> int:
    """Image tokens of one training sample: every camera at every observation step."""
    return vision_tokens(cfg, model) * len(cfg.image_keys) * cfg.n_obs_steps


def estimate_training_memory(cfg: Any, n_params: int, n_trainable: int, batch_size: int,
                             precision: str = "fp32", model: Any = None, freeze_vision: bool = False,
                             freeze_vlm: bool = False, gradient_checkpointing: bool = False) -> dict[str, float]:
    """A rough estimate (bytes) of the memory one AdamW training step needs.

    Weights stay fp32 (mixed precision keeps fp32 master weights); gradients and the two Adam moments
    are fp32 per trainable parameter; activations are counted per sample from the token count and
    layer sizes (transformer layers: ~16*h + 2*ffn values per token plus 2*heads*S^2 attention values;
    conv encoders: their feature maps), in the compute precision. Frozen parts (the training config's
    ``freeze_vision`` / ``freeze_vlm``) keep no activations for the backward pass beyond their output.
    Expect +-50%; allocator overhead is not included.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of: {', '.join(PRECISIONS)}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch size {batch_size!r} must be a whole number >= 1")
    act_bytes = PRECISIONS[precision]
    k = len(cfg.image_keys) * cfg.n_obs_steps
    n_img = vision_tokens(cfg, model) * k
    seq = n_img + cfg.max_text_tokens + (cfg.n_obs_steps if cfg.state_dim else 0) + 1
    h, layers, ffn, heads = cfg.llm_hidden_size, cfg.llm_num_layers, cfg.llm_intermediate_size, cfg.llm_num_heads
    per_layer = seq * (16 * h + 2 * ffn) + 2 * heads * seq * seq
    if gradient_checkpointing:
        llm_act = seq * h * layers + per_layer
    else:
        llm_act = per_layer * layers
    if freeze_vlm:
        llm_act = seq * h * 2  # no backward through the frozen LM: its output only
    s = cfg.image_size
    vision = cfg.vision.to_dict() if cfg.vision is not None else {}  # the chosen encoder's settings
    d = vision.get("dim", 512)  # (the resnets: 512-d and wider feature maps)
    if cfg.vision_encoder in ("siglip", "clip", "dinov2", "dinosiglip", "smolvlm", "qwen2-vl"):  # ViTs
        p = max(1, (s // vision["patch_size"]) ** 2)
        vis_act = vision["num_layers"] * (p * 18 * d + 2 * vision["num_heads"] * p * p)
        vis_act *= 2 if cfg.vision_encoder == "dinosiglip" else 1  # two towers
    elif cfg.vision_encoder.startswith("resnet"):
        depth = {"resnet34": 2, "resnet50": 4}.get(cfg.vision_encoder, 1)
        vis_act = depth * 25 * 64 * (s // 4) ** 2  # ~25 feature maps of the stem's size per 18 layers
    else:  # cnn: 4 stride-2 conv layers of vision.dim channels; conv, norm, activation outputs
        vis_act = sum(3 * d * (s // 2 ** i) ** 2 for i in range(1, 5))
    vis_act *= k
    if freeze_vision or freeze_vlm:
        vis_act = n_img * d
    head = cfg.head.to_dict() if cfg.head is not None else {}  # the chosen head's settings (sizes where it has them)
    head_act = head.get("num_layers", 1) * head.get("hidden_dim", 0) * 3 + cfg.chunk_size * cfg.action_dim * 4
    activations = batch_size * (llm_act + vis_act + head_act) * act_bytes
    weights = n_params * 4
    grads = n_trainable * 4
    adam = n_trainable * 8
    return {"weights": weights, "gradients": grads, "optimizer (AdamW moments)": adam,
            "activations": activations, "total": weights + grads + adam + activations}


def format_bytes(n: float) -> str:
    """``1.50 GiB``, ``12.00 MiB``, ``3.00 KiB`` or ``512 B``."""
    for unit, div in (("GiB", 1024 ** 3), ("MiB", 1024 ** 2), ("KiB", 1024)):
        if n >= div:
            return f"{n / div:.2f} {unit}"
    return f"{int(n)} B"


def part_counts(model: Any) -> list[tuple[str, str, int, int]]:
    """(part, class, parameters, trainable) for the model's main parts, and the rest as 'other'."""
    rows, seen = [], set()
    for name in PARTS:
        mod = getattr(model, name, None)
        if mod is None:
            continue
        ps = list(mod.parameters())
        seen.update(id(p) for p in ps)
        rows.append((name, type(mod).__name__, sum(p.numel() for p in ps),
                     sum(p.numel() for p in ps if p.requires_grad)))
    rest = [p for p in model.parameters() if id(p) not in seen]
    rows.append(("other (state, queries, embeddings)", "", sum(p.numel() for p in rest),
                 sum(p.numel() for p in rest if p.requires_grad)))
    return rows


def module_tree(model: Any, max_depth: int = 5) -> str:
    """Indented module tree with parameter counts, down to ``max_depth`` levels; a run of identical
    numbered children (transformer layers) is shown once with its count."""
    lines = []

    def count(mod: Any) -> int:
        return sum(p.numel() for p in mod.parameters())

    def line(depth: int, name: str, mod: Any, suffix: str = "") -> None:
        n = count(mod)
        frozen = n and not any(p.requires_grad for p in mod.parameters())
        lines.append(f"{'  ' * depth}{name} ({type(mod).__name__}) {n:,}{suffix}{' [frozen]' if frozen else ''}")

    def walk(mod: Any, name: str, depth: int, suffix: str = "") -> None:
        line(depth, name, mod, suffix)
        kids = list(mod.named_children())
        if not kids:
            return
        if depth + 1 > max_depth:
            lines.append(f"{'  ' * (depth + 1)}… {len(kids)} children")
            return
        numbered = all(k.isdigit() for k, _ in kids) and len(kids) > 1
        if numbered and len({type(c) for _, c in kids}) == 1 and len({count(c) for _, c in kids}) == 1:
            walk(kids[0][1], f"[0-{len(kids) - 1}]", depth + 1, f" each, x{len(kids)}")
            return
        for child_name, child in kids:
            walk(child, child_name, depth + 1)

    walk(model, "model", 0)
    return "\n".join(lines)


def synthetic_batch(cfg: Any, batch_size: int = 2) -> dict:
    """A random batch shaped for ``cfg`` (images, state, an action chunk, instructions); seeded, so repeatable."""
    import torch

    g = torch.Generator().manual_seed(0)
    s = cfg.image_size
    batch: dict[str, Any] = {k: torch.rand(batch_size, 3, s, s, generator=g) for k in cfg.image_keys}
    if cfg.state_dim:
        batch["observation.state"] = torch.randn(batch_size, cfg.state_dim, generator=g)
    batch["action"] = torch.randn(batch_size, cfg.chunk_size, cfg.action_dim, generator=g)
    batch["action_is_pad"] = torch.zeros(batch_size, cfg.chunk_size, dtype=torch.bool)
    texts = ["touch the red block", "push the blue block into the left zone"]
    batch["task"] = [texts[i % len(texts)] for i in range(batch_size)]
    sensors = getattr(cfg, "sensors", None)
    if sensors is not None:  # a multi-sensor model: a lidar cloud, radar targets, IMU samples (driving shapes)
        shapes = {"lidar": (256, 4), "radar": (16, 4), "imu": (4, 6)}
        for name in sensors.sensors:
            n = shapes[name][0]
            batch[f"observation.{name}"] = torch.randn(batch_size, *shapes[name], generator=g)
            batch[f"observation.{name}_mask"] = torch.ones(batch_size, n, dtype=torch.bool)
        if sensors.prediction_horizon:
            batch[sensors.waypoint_key] = torch.randn(batch_size, sensors.prediction_horizon, 2, generator=g)
    return batch


def dataset_batch(dataset: Any, cfg: Any, batch_size: int = 2) -> dict:
    """``batch_size`` items spread over ``dataset`` (a LeRobotVLADataset) cut for model config ``cfg``:
    its observation history and chunk length. Sizes that do not fit the data are refused with the fix."""
    from ..data import LeRobotVLADataset, collate_batch

    name = getattr(dataset, "repo_id", "the dataset")
    if cfg.action_dim != dataset.action_dim:
        raise ConfigError(f"model.action_dim is {cfg.action_dim} but {name} has {dataset.action_dim}-D actions; "
                          f"set action_dim to {dataset.action_dim}")
    if cfg.state_dim not in (0, dataset.state_dim):
        raise ConfigError(f"model.state_dim is {cfg.state_dim} but {name} has a {dataset.state_dim}-D state; "
                          f"set state_dim to {dataset.state_dim} (or 0)")
    missing = [k for k in cfg.image_keys if k not in dataset.image_keys]
    if missing:
        raise ConfigError(f"model.image_keys {missing} are not cameras of {name}; it has "
                          f"{', '.join(dataset.image_keys)}")
    ds = LeRobotVLADataset(dataset.repo_id, root=dataset.root, n_obs_steps=cfg.n_obs_steps,
                           chunk_size=cfg.chunk_size)
    idx = [int(i * (len(ds) - 1) / max(1, batch_size - 1)) for i in range(batch_size)]
    batch = collate_batch([ds[i] for i in idx])
    if cfg.state_dim == 0:  # the model takes no state
        batch.pop("observation.state", None)
    return batch


def shape_of(x: Any) -> str:
    """``(2, 3, 96, 96) float32`` for a tensor; tensors in a tuple joined; a model output's hidden state."""
    import torch

    if isinstance(x, torch.Tensor):
        return f"{tuple(x.shape)} {str(x.dtype).replace('torch.', '')}"
    if isinstance(x, (tuple, list)) and x and isinstance(x[0], torch.Tensor):
        return ", ".join(shape_of(t) for t in x)
    if hasattr(x, "last_hidden_state"):
        return shape_of(x.last_hidden_state)
    if isinstance(x, list):
        return f"list[{len(x)}]"
    return type(x).__name__


@dataclass
class ForwardProbe:
    """One training forward and a few inference calls of a model on one batch."""

    inputs: dict[str, str]  # batch key -> shape (instructions: their count)
    outputs: dict[str, str]  # model part -> its output's shape
    chunk_shape: tuple[int, ...]  # (1, chunk, action_dim)
    loss: float
    latency_ms: list[float]  # predict_action_chunk on one sample, per call
    threads: int  # torch CPU threads during the calls

    @property
    def median_ms(self) -> float:
        return statistics.median(self.latency_ms)


def forward_probe(model: Any, batch: dict, repeats: int = 5) -> ForwardProbe:
    """Run the training forward (loss) and the inference path on the batch's first sample ``repeats``
    times (after one warm-up call); the shapes each part gives out, the loss and the latency."""
    import torch

    shapes: dict[str, str] = {}
    hooks = []

    def recorder(name: str):
        def hook(module: Any, inputs: Any, output: Any) -> None:  # returns None: the output is unchanged
            shapes.setdefault(name, shape_of(output))

        return hook

    for name in PARTS:
        mod = getattr(model, name, None)
        if mod is not None:
            hooks.append(mod.register_forward_hook(recorder(name)))
    model.eval()
    try:
        with torch.no_grad():
            loss, _ = model(batch)
            one = {k: (v[:1] if isinstance(v, (torch.Tensor, list)) else v) for k, v in batch.items()}
            model.predict_action_chunk(one)  # warm-up
            times = []
            for _ in range(max(1, repeats)):
                t0 = time.perf_counter()
                chunk = model.predict_action_chunk(one)  # (1, chunk, A)
                times.append(1000 * (time.perf_counter() - t0))
    finally:
        for h in hooks:
            h.remove()
    inputs = {k: (f"{len(v)} instruction(s)" if isinstance(v, list) else shape_of(v)) for k, v in batch.items()
              if not k.endswith("_is_pad") and k not in _NOT_INPUTS}
    return ForwardProbe(inputs=inputs, outputs=shapes, chunk_shape=tuple(chunk.shape), loss=float(loss),
                        latency_ms=times, threads=torch.get_num_threads())


__all__ = ["PRECISIONS", "ForwardProbe", "dataset_batch", "estimate_training_memory", "format_bytes",
           "forward_probe", "image_tokens_per_sample", "module_tree", "part_counts", "shape_of", "synthetic_batch",
           "vision_tokens"]


def scratch_lm_parameters(cfg: Any, vocab_size: int = 512) -> int:
    """The parameters of a language model built from scratch from ``cfg`` (llama-style: q/k/v/o projections,
    a gated feed-forward, norms, tied embeddings); 0 for a pretrained one (its own size)."""
    if getattr(cfg, "llm_pretrained", None):
        return 0
    h, ffn, layers = cfg.llm_hidden_size, cfg.llm_intermediate_size, cfg.llm_num_layers
    return layers * (4 * h * h + 3 * h * ffn + 2 * h) + vocab_size * h + h


def available_memory_bytes() -> int | None:
    """Memory the system can still give (Linux ``MemAvailable``), or None where it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_buildable(cfg: Any, vocab_size: int = 512) -> None:
    """Refuse, in one line, a from-scratch language model whose fp32 weights alone do not fit in the memory the
    system has available (instead of failing deep in the allocator)."""
    need = 4 * scratch_lm_parameters(cfg, vocab_size)
    have = available_memory_bytes()
    if have is not None and need > 0.8 * have:
        raise ConfigError(
            f"model.llm_hidden_size {cfg.llm_hidden_size} with {cfg.llm_num_layers} layers (feed-forward "
            f"{cfg.llm_intermediate_size}) needs about {format_bytes(need)} for its weights alone, more than the "
            f"{format_bytes(have)} this machine has free; choose a smaller llm_hidden_size / llm_intermediate_size")
