"""Model builder tab: choose the parts and sizes of a VLA (a form over ModelConfig), see parameter
counts, a training-memory estimate and the module tree, run one forward pass on a sample (from a
local dataset, or synthetic), and save the model as a preset in the user presets folder. The facts
come from :mod:`vla_engine.models.inspect`; this module lays them out."""

from __future__ import annotations

import json
import time
from typing import Any

import gradio as gr

from vla_engine.models.inspect import (PRECISIONS, ForwardProbe, dataset_batch, estimate_training_memory,
                                       format_bytes, forward_probe, image_tokens_per_sample, module_tree,
                                       part_counts, synthetic_batch)

from ..context import AppContext, AppError, check_name, inside
from ..events import handler
from ..model_form import ModelForm

PRIMARY = ["vision_encoder", "image_size", "projector", "llm", "llm_hidden_size", "llm_num_layers", "llm_num_heads",
           "llm_intermediate_size", "action_head", "action_dim", "state_dim", "chunk_size"]
SYNTHETIC = "synthetic sample"


def parameters_markdown(model: Any) -> str:
    total, trainable = model.num_parameters(), model.num_parameters(trainable_only=True)
    rows = ["| part | class | parameters | trainable |", "|---|---|---:|---:|"]
    rows += [f"| {n} | {c} | {p:,} | {t:,} |" for n, c, p, t in part_counts(model)]
    return (f"### Parameters\n**{total:,}** total · **{trainable:,}** trainable "
            f"({trainable / max(1, total):.0%})\n\n" + "\n".join(rows))


def memory_markdown(cfg: Any, model: Any, batch_size: int, precision: str) -> str:
    mem = estimate_training_memory(cfg, model.num_parameters(), model.num_parameters(trainable_only=True),
                                   batch_size, precision, model)
    rows = ["| | bytes |", "|---|---:|"] + [f"| {k} | {format_bytes(v)} |" for k, v in mem.items()]
    return (f"### Training memory (estimate)\nbatch {batch_size}, {precision}, AdamW; "
            f"{image_tokens_per_sample(cfg, model)} image tokens + {cfg.max_text_tokens} text tokens per sample\n\n"
            + "\n".join(rows))


def probe_markdown(probe: ForwardProbe) -> str:
    lines = ["| input | shape |", "|---|---|"]
    lines += [f"| `{k}` | {v} |" for k, v in probe.inputs.items()]
    lines += ["", "| module | output |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in probe.outputs.items()]
    lines += ["", f"**Predicted action chunk:** {probe.chunk_shape} (batch, chunk, action_dim) · "
                  f"**loss** {probe.loss:.4f} (untrained) · **inference latency** "
                  f"{probe.median_ms:.1f} ms per chunk (median of {len(probe.latency_ms)}, batch 1, CPU threads "
                  f"{probe.threads})"]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# The tab.
# ------------------------------------------------------------------------------------------------
def build(ctx: AppContext, demo: gr.Blocks) -> None:
    from vla_engine.config.model_config import ModelConfig
    from vla_engine.config.run_config import RunConfig
    from vla_engine.models import VLM_PRESETS, list_vlm_presets

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
        form = ModelForm(default, registries=model_regs, primary=PRIMARY)
        form.wire_part_changes()
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

    def config_of(model: tuple) -> Any:
        return ModelConfig.from_dict(ctx.check_model_paths(form.values(model)))

    def get_model(cfg: Any) -> Any:
        """Build (or reuse the last built) model for ``cfg``."""
        from vla_engine.runs.jobs import build_model_for

        key = json.dumps(cfg.to_dict(), sort_keys=True)
        cache = ctx.extras.setdefault("model_builder", {})
        if cache.get("key") != key:
            cache.clear()
            cache["model"] = build_model_for(cfg, None)  # a VLAModel, or a MultiSensorVLA with model.sensors
            cache["key"] = key
        return cache["model"]

    @handler(inputs={"current": sample_src},
             outputs={"named": named_default, "sample": sample_src, "base_preset": base_preset}, warn=False)
    def on_tab(current: str):
        """Refresh the lists; a dataset sample replaces the synthetic one once a dataset exists."""
        local = [d["name"] for d in ctx.list_datasets()]
        value = local[0] if (current in (None, "", SYNTHETIC) and local) else current
        return {"named": gr.update(choices=[(f"{k}: {v}", k) for k, v in list_vlm_presets().items()]),
                "sample": gr.update(choices=[SYNTHETIC] + local, value=value),
                "base_preset": gr.update(choices=ctx.preset_choices())}

    on_tab.listen(tab.select, api_name=False)

    @handler(inputs={"name": named_default}, outputs={"model": form, "status": status}, status="status")
    def on_named(name: str):
        if not name:  # the list opened and closed without a choice
            return {}
        if name not in VLM_PRESETS:
            raise AppError(f"unknown named model {name!r}; choose one of: {', '.join(VLM_PRESETS)}")
        cfg = ModelConfig.from_dict({**ModelConfig().to_dict(), **VLM_PRESETS[name]})
        return {"model": form.updates(cfg.to_dict()), "status": f"Loaded the named model **{name}**."}

    on_named.listen(named_default.input, api_name="model_defaults")

    @handler(inputs={"batch_size": batch_size, "precision": precision, "model": form},
             outputs={"status": status, "params": params_md, "memory": memory_md, "tree": tree,
                      "forward": forward_md}, status="status")
    def summarize(batch_size: Any, precision: str, model: tuple):
        cfg = config_of(model)
        if not isinstance(batch_size, (int, float)) or batch_size < 1 or int(batch_size) != batch_size:
            raise AppError(f"batch size {batch_size!r} must be a whole number >= 1")
        if precision not in PRECISIONS:
            raise AppError(f"precision {precision!r} is not one of: {', '.join(PRECISIONS)}")
        t0 = time.perf_counter()
        built = get_model(cfg)
        return {"status": f"Built in {time.perf_counter() - t0:.1f} s.", "params": parameters_markdown(built),
                "memory": memory_markdown(cfg, built, int(batch_size), precision), "tree": module_tree(built),
                "forward": ""}

    summarize.listen(build_btn.click, api_name="model_summary", concurrency_limit=1)

    @handler(inputs={"sample": sample_src, "model": form}, outputs={"status": status, "forward": forward_md},
             status="status")
    def forward(sample: str, model: tuple):
        cfg = config_of(model)
        built = get_model(cfg)
        if sample and sample != SYNTHETIC:
            data = ctx.open_dataset(sample)  # validates the name and that it exists
            batch = dataset_batch(data, cfg)
            built.set_normalization({k: v for k, v in data.stats.items() if k in ("action", "observation.state")})
            origin = f"2 frames of dataset **{sample}**"
        else:
            batch = synthetic_batch(cfg)
            origin = "a synthetic batch of 2 (random images, state and actions)"
        return {"status": f"Forward pass on {origin}.", "forward": probe_markdown(forward_probe(built, batch))}

    forward.listen(fwd_btn.click, api_name="model_forward", concurrency_limit=1)

    @handler(inputs={"preset_name": preset_name, "base_preset": base_preset, "model": form},
             outputs={"saved": save_md}, status="saved")
    def save(preset_name: str, base_preset: str, model: tuple):
        name = check_name(preset_name, "preset name")
        cfg = ctx.preset_dict(base_preset or "quickstart")
        cfg["model"] = config_of(model).to_dict()
        cfg["name"] = name
        cfg["description"] = f"model from the Model builder, training settings from {base_preset or 'quickstart'}"
        run_cfg = RunConfig.from_dict(cfg)  # the whole run config must validate
        ctx.user_presets_dir.mkdir(parents=True, exist_ok=True)
        path = inside(ctx.user_presets_dir / f"{name}.yaml", ctx.user_presets_dir)
        existed = path.exists()
        run_cfg.to_yaml(path)
        return {"saved": f"{'Replaced' if existed else 'Saved'} preset **user/{name}** in `{path}`; pick it in the "
                         f"Training tab's preset list."}

    save.listen(save_btn.click, api_name="model_save_preset")
