"""Model builder tab: choose the parts and sizes of a VLA (a form over ModelConfig), see parameter
counts, a training-memory estimate and the module tree, run one forward pass on a sample (from a
local dataset, or synthetic), and save the model as a preset in the user presets folder."""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

import gradio as gr

from ..context import AppContext, AppError, check_name, inside
from ..forms import Form, guarded, named

PRIMARY = ["vision_encoder", "image_size", "vision_dim", "vision_pool", "film", "projector", "llm", "llm_hidden_size",
           "llm_num_layers", "llm_num_heads", "llm_intermediate_size", "action_head", "head_hidden_dim",
           "head_num_layers", "action_dim", "state_dim", "chunk_size"]
PRECISIONS = {"fp32": 4, "bf16-mixed": 2, "fp16-mixed": 2}
SYNTHETIC = "synthetic sample"
GiB = 1024 ** 3


# ------------------------------------------------------------------------------------------------
# Facts about a model (no widgets).
# ------------------------------------------------------------------------------------------------
def vision_tokens(cfg: Any, model: Any = None) -> int:
    """Image tokens per camera and step that reach the LM for ``cfg`` (read from ``model`` when built:
    the encoder's ``num_tokens`` after the projector, which may pool them to ``projector_num_tokens``)."""
    if model is not None:
        n = getattr(getattr(model, "vision_encoder", None), "num_tokens", None)
        proj = getattr(model, "projector", None)
        if n and hasattr(proj, "output_tokens"):
            n = proj.output_tokens(n)
        if n:
            return int(n)
    if cfg.projector in ("attention", "perceiver"):
        return cfg.projector_num_tokens
    s = cfg.image_size
    if cfg.vision_encoder == "cnn":
        return cfg.vision_pool ** 2 if cfg.vision_pool else max(1, (s // 16) ** 2)
    if cfg.vision_encoder in ("siglip", "clip", "dinosiglip"):
        return max(1, (s // cfg.vision_patch_size) ** 2)
    if cfg.vision_encoder == "dinov2":
        return max(1, (s // cfg.vision_patch_size) ** 2) + 1
    if cfg.vision_encoder.startswith("resnet"):
        return max(1, -(-s // 32) ** 2)
    return 16


def estimate_training_memory(cfg: Any, n_params: int, n_trainable: int, batch_size: int,
                             precision: str = "fp32", model: Any = None) -> dict[str, float]:
    """A rough estimate (bytes) of the memory one AdamW training step needs.

    Weights stay fp32 (mixed precision keeps fp32 master weights); gradients and the two Adam moments
    are fp32 per trainable parameter; activations are counted per sample from the token count and
    layer sizes (transformer layers: ~16*h + 2*ffn values per token plus 2*heads*S^2 attention values;
    conv encoders: their feature maps), in the compute precision. Frozen parts keep no activations
    for the backward pass beyond their output. Expect +-50%; allocator overhead is not included.
    """
    act_bytes = PRECISIONS.get(precision, 4)
    k = len(cfg.image_keys) * cfg.n_obs_steps
    n_img = vision_tokens(cfg, model) * k
    seq = n_img + cfg.max_text_tokens + (cfg.n_obs_steps if cfg.state_dim else 0) + 1
    h, layers, ffn, heads = cfg.llm_hidden_size, cfg.llm_num_layers, cfg.llm_intermediate_size, cfg.llm_num_heads
    per_layer = seq * (16 * h + 2 * ffn) + 2 * heads * seq * seq
    if cfg.use_gradient_checkpointing:
        llm_act = seq * h * layers + per_layer
    else:
        llm_act = per_layer * layers
    if cfg.freeze_vlm:
        llm_act = seq * h * 2  # no backward through the frozen LM: its output only
    s = cfg.image_size
    if cfg.vision_encoder in ("siglip", "clip", "dinov2", "dinosiglip", "smolvlm", "qwen2-vl"):  # ViTs
        p = max(1, (s // cfg.vision_patch_size) ** 2)
        d = cfg.vision_dim
        vis_act = cfg.vision_num_layers * (p * 18 * d + 2 * cfg.vision_num_heads * p * p)
        vis_act *= 2 if cfg.vision_encoder == "dinosiglip" else 1  # two towers
    elif cfg.vision_encoder.startswith("resnet"):
        depth = {"resnet34": 2, "resnet50": 4}.get(cfg.vision_encoder, 1)
        vis_act = depth * 25 * 64 * (s // 4) ** 2  # ~25 feature maps of the stem's size per 18 layers
    else:  # cnn: 4 stride-2 conv layers of vision_dim channels; conv, norm, activation outputs
        vis_act = sum(3 * cfg.vision_dim * (s // 2 ** i) ** 2 for i in range(1, 5))
    vis_act *= k
    if cfg.freeze_vision or cfg.freeze_vlm:
        vis_act = n_img * cfg.vision_dim
    head_act = cfg.head_num_layers * cfg.head_hidden_dim * 3 + cfg.chunk_size * cfg.action_dim * 4
    activations = batch_size * (llm_act + vis_act + head_act) * act_bytes
    weights = n_params * 4
    grads = n_trainable * 4
    adam = n_trainable * 8
    return {"weights": weights, "gradients": grads, "optimizer (AdamW moments)": adam,
            "activations": activations, "total": weights + grads + adam + activations}


def _fmt_bytes(n: float) -> str:
    for unit, div in (("GiB", GiB), ("MiB", 1024 ** 2), ("KiB", 1024)):
        if n >= div:
            return f"{n / div:.2f} {unit}"
    return f"{int(n)} B"


def part_counts(model: Any) -> list[tuple[str, str, int, int]]:
    """(part, class, parameters, trainable) for the model's main parts, and the rest as 'other'."""
    rows, seen = [], set()
    for name in ("vision_encoder", "projector", "backbone", "action_head"):
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
    import torch

    g = torch.Generator().manual_seed(0)
    s = cfg.image_size
    batch: dict[str, Any] = {k: torch.rand(batch_size, 3, s, s, generator=g) for k in cfg.image_keys}
    if cfg.state_dim:
        batch["observation.state"] = torch.randn(batch_size, cfg.state_dim, generator=g)
    batch["action"] = torch.randn(batch_size, cfg.chunk_size, cfg.action_dim, generator=g)
    batch["action_is_pad"] = torch.zeros(batch_size, cfg.chunk_size, dtype=torch.bool)
    batch["task"] = ["touch the red block", "push the blue block into the left zone"][:batch_size] * (
        batch_size // 2 + 1)
    batch["task"] = batch["task"][:batch_size]
    return batch


def dataset_batch(ctx: AppContext, name: str, cfg: Any, batch_size: int = 2) -> tuple[dict, dict]:
    """A batch of ``batch_size`` items of local dataset ``name`` cut for ``cfg`` and the dataset's stats."""
    from vla_engine.data import LeRobotVLADataset, collate_batch

    base = ctx.open_dataset(name)  # validates the name and that it exists
    if cfg.action_dim != base.action_dim:
        raise AppError(f"model.action_dim is {cfg.action_dim} but dataset {name} has {base.action_dim}-D actions; "
                       f"set action_dim to {base.action_dim}")
    if cfg.state_dim not in (0, base.state_dim):
        raise AppError(f"model.state_dim is {cfg.state_dim} but dataset {name} has a {base.state_dim}-D state; "
                       f"set state_dim to {base.state_dim} (or 0)")
    missing = [k for k in cfg.image_keys if k not in base.image_keys]
    if missing:
        raise AppError(f"model.image_keys {missing} are not cameras of {name}; it has {', '.join(base.image_keys)}")
    ds = LeRobotVLADataset(base.repo_id, root=base.root, n_obs_steps=cfg.n_obs_steps, chunk_size=cfg.chunk_size)
    idx = [int(i * (len(ds) - 1) / max(1, batch_size - 1)) for i in range(batch_size)]
    return collate_batch([ds[i] for i in idx]), ds.stats


def _shape_of(x: Any) -> str:
    import torch

    if isinstance(x, torch.Tensor):
        return f"{tuple(x.shape)} {str(x.dtype).replace('torch.', '')}"
    if isinstance(x, (tuple, list)) and x and isinstance(x[0], torch.Tensor):
        return ", ".join(_shape_of(t) for t in x)
    if hasattr(x, "last_hidden_state"):
        return _shape_of(x.last_hidden_state)
    if isinstance(x, list):
        return f"list[{len(x)}]"
    return type(x).__name__


def forward_report(model: Any, batch: dict, repeats: int = 5) -> str:
    """Run the training forward (loss) and the inference path once each; shapes, loss and latency."""
    import torch

    shapes: dict[str, str] = {}
    hooks = []

    def recorder(name: str):
        def hook(module: Any, inputs: Any, output: Any) -> None:  # returns None: the output is unchanged
            shapes.setdefault(name, _shape_of(output))

        return hook

    for name in ("vision_encoder", "projector", "backbone", "action_head"):
        mod = getattr(model, name, None)
        if mod is not None:
            hooks.append(mod.register_forward_hook(recorder(name)))
    model.eval()
    try:
        with torch.no_grad():
            loss, info = model(batch)
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
    lines = ["| input | shape |", "|---|---|"]
    for k, v in batch.items():
        if k.endswith("_is_pad") or k in ("index", "frame_index", "episode_index", "task_index", "timestamp"):
            continue
        lines.append(f"| `{k}` | {_shape_of(v) if not isinstance(v, list) else f'{len(v)} instruction(s)'} |")
    lines += ["", "| module | output |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in shapes.items()]
    lines += ["", f"**Predicted action chunk:** {tuple(chunk.shape)} (batch, chunk, action_dim) · "
                  f"**loss** {float(loss):.4f} (untrained) · **inference latency** "
                  f"{statistics.median(times):.1f} ms per chunk (median of {len(times)}, batch 1, CPU threads "
                  f"{torch.get_num_threads()})"]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# The tab.
# ------------------------------------------------------------------------------------------------
def build(ctx: AppContext, demo: gr.Blocks) -> None:
    from vla_engine.config.model_config import ModelConfig
    from vla_engine.config.run_config import RunConfig

    regs = ctx.registries
    model_regs = {"vision_encoder": regs["vision_encoders"], "projector": regs["projectors"],
                  "llm": regs["language_models"], "action_head": regs["action_heads"]}
    default = ModelConfig().to_dict()

    with gr.Tab("Model builder", id="model") as tab:
        gr.Markdown("Choose the parts and their sizes. **Build** counts parameters and estimates training memory; "
                    "**Forward pass** runs one batch through the model. Save the model as a preset to train it "
                    "in the *Training* tab.")
        with gr.Row():
            named_default = gr.Dropdown([], label="Start from a named model", allow_custom_value=True, scale=2)
            local = [d["name"] for d in ctx.list_datasets()]
            sample_src = gr.Dropdown([SYNTHETIC] + local, value=local[0] if local else SYNTHETIC,
                                     label="Sample for the forward pass", scale=2, allow_custom_value=True)
            batch_size = gr.Number(64, precision=0, label="Batch size (memory estimate)", scale=1)
            precision = gr.Dropdown(list(PRECISIONS), value="fp32", label="Precision", scale=1)
        form = Form("model", ModelConfig, default, registries=model_regs, primary=PRIMARY)
        with gr.Row():
            build_btn = gr.Button("Build & count", variant="primary")
            fwd_btn = gr.Button("Forward pass")
        status = gr.Markdown("")
        with gr.Row():
            params_md = gr.Markdown("")
            memory_md = gr.Markdown("")
        forward_md = gr.Markdown("")
        with gr.Accordion("Module tree", open=False):
            tree = gr.Code("", language=None, lines=20)
        with gr.Accordion("Save as a preset", open=False):
            with gr.Row():
                preset_name = gr.Textbox("my-model", label="Preset name", scale=2)
                base_preset = gr.Dropdown(ctx.preset_choices(), value="quickstart", label="Training settings from",
                                          allow_custom_value=True, scale=2)
                save_btn = gr.Button("Save preset", scale=1)
            save_md = gr.Markdown("")

    n_form = len(form.inputs)

    def config_of(values: tuple) -> Any:
        return ModelConfig.from_dict(ctx.check_model_paths(form.values(values)))

    def get_model(cfg: Any) -> Any:
        """Build (or reuse the last built) model for ``cfg``."""
        from vla_engine.models import VLAModel

        key = json.dumps(cfg.to_dict(), sort_keys=True)
        cache = ctx.extras.setdefault("model_builder", {})
        if cache.get("key") != key:
            cache.clear()
            cache["model"] = VLAModel(cfg)
            cache["key"] = key
        return cache["model"]

    def on_tab(current: str):
        """Refresh the lists; a dataset sample replaces the synthetic one once a dataset exists."""
        from vla_engine.models.vla import list_vlm_presets

        names = [(f"{k}: {v}", k) for k, v in list_vlm_presets().items()]
        local = [d["name"] for d in ctx.list_datasets()]
        value = local[0] if (current in (None, "", SYNTHETIC) and local) else current
        return (gr.update(choices=names), gr.update(choices=[SYNTHETIC] + local, value=value),
                gr.update(choices=ctx.preset_choices()))

    tab.select(guarded(3, status_index=None)(on_tab), [sample_src], [named_default, sample_src, base_preset],
               api_name=False)

    @guarded(n_form + 1, status_index=n_form)
    def on_named(name: str):
        from vla_engine.models.vla import VLM_PRESETS, resolve_vlm

        if name not in VLM_PRESETS:
            raise AppError(f"unknown named model {name!r}; choose one of: {', '.join(VLM_PRESETS)}")
        fields = resolve_vlm(name)
        cfg = ModelConfig.from_dict({**ModelConfig().to_dict(), **fields})
        return (*form.updates(cfg.to_dict()), f"Loaded the named model **{name}**.")

    named_default.input(on_named, [named_default], [*form.inputs, status], api_name="model_defaults")

    @guarded(5, status_index=0)
    def summarize(bs: Any, prec: str, *values):
        cfg = config_of(values)
        if not isinstance(bs, (int, float)) or bs < 1 or int(bs) != bs:
            raise AppError(f"batch size {bs!r} must be a whole number >= 1")
        if prec not in PRECISIONS:
            raise AppError(f"precision {prec!r} is not one of: {', '.join(PRECISIONS)}")
        t0 = time.perf_counter()
        model = get_model(cfg)
        build_s = time.perf_counter() - t0
        total, trainable = model.num_parameters(), model.num_parameters(trainable_only=True)
        rows = ["| part | class | parameters | trainable |", "|---|---|---:|---:|"]
        rows += [f"| {n} | {c} | {p:,} | {t:,} |" for n, c, p, t in part_counts(model)]
        params = (f"### Parameters\n**{total:,}** total · **{trainable:,}** trainable "
                  f"({trainable / max(1, total):.0%})\n\n" + "\n".join(rows))
        mem = estimate_training_memory(cfg, total, trainable, int(bs), prec, model)
        mrows = ["| | bytes |", "|---|---:|"] + [f"| {k} | {_fmt_bytes(v)} |" for k, v in mem.items()]
        memory = (f"### Training memory (estimate)\nbatch {int(bs)}, {prec}, AdamW; "
                  f"{vision_tokens(cfg, model) * len(cfg.image_keys) * cfg.n_obs_steps} image tokens + "
                  f"{cfg.max_text_tokens} text tokens per sample\n\n" + "\n".join(mrows))
        return (f"Built in {build_s:.1f} s.", params, memory, module_tree(model), "")

    summary_inputs = [batch_size, precision, *form.inputs]
    build_btn.click(named(summarize, ["batch_size", "precision"] + form.param_names), summary_inputs,
                    [status, params_md, memory_md, tree, forward_md], api_name="model_summary",
                    concurrency_limit=1)

    @guarded(2, status_index=0)
    def forward(src: str, *values):
        cfg = config_of(values)
        model = get_model(cfg)
        if src and src != SYNTHETIC:
            batch, stats = dataset_batch(ctx, src, cfg)
            if cfg.state_dim == 0 and "observation.state" in batch:
                batch.pop("observation.state")
            model.set_normalization({k: v for k, v in stats.items() if k in ("action", "observation.state")})
            origin = f"2 frames of dataset **{src}**"
        else:
            batch = synthetic_batch(cfg)
            origin = "a synthetic batch of 2 (random images, state and actions)"
        return f"Forward pass on {origin}.", forward_report(model, batch)

    fwd_btn.click(named(forward, ["sample"] + form.param_names), [sample_src, *form.inputs], [status, forward_md],
                  api_name="model_forward", concurrency_limit=1)

    @guarded(1)
    def save(name: str, base: str, *values):
        name = check_name(name, "preset name")
        cfg = ctx.preset_dict(base or "quickstart")
        cfg["model"] = config_of(values).to_dict()
        cfg["name"] = name
        cfg["description"] = f"model from the Model builder, training settings from {base or 'quickstart'}"
        run_cfg = RunConfig.from_dict(cfg)  # the whole run config must validate
        ctx.user_presets_dir.mkdir(parents=True, exist_ok=True)
        path = inside(ctx.user_presets_dir / f"{name}.yaml", ctx.user_presets_dir)
        existed = path.exists()
        run_cfg.to_yaml(path)
        return (f"{'Replaced' if existed else 'Saved'} preset **user/{name}** in `{path}`; pick it in the Training "
                f"tab's preset list.")

    save_btn.click(named(save, ["preset_name", "base_preset"] + form.param_names),
                   [preset_name, base_preset, *form.inputs], [save_md], api_name="model_save_preset")
