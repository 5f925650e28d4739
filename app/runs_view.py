"""The runs as tables and comparisons: every job of the runs folder by kind, and several training runs side by
side (one metric overlaid, and the settings they differ in). Reads run folders only; no widgets."""

from __future__ import annotations

from typing import Any, Sequence

from vla_engine.config.diff import config_diff

from .context import AppContext
from .forms import fmt_duration

# job kind -> what the tables call it
JOB_NAMES = {"train": "training", "eval": "evaluation", "datagen": "data generation"}
ALL_JOBS = "all"
RUN_COLUMNS = ["run", "kind", "name", "method / task", "state", "progress", "ETA", "result", "error"]
MAX_CELL = 80  # characters of a name or an error shown in a table cell (the full text is in the run folder)


def _cell(text: Any) -> str:
    text = "" if text is None else str(text).replace("\n", " ")
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def runs_table(ctx: AppContext, kind: str = "train"):
    """The runs of one job kind (``train``, ``eval``, ``datagen``, or ``all``), newest first."""
    import pandas as pd

    data = []
    for r in reversed(ctx.list_runs(None if kind == ALL_JOBS else kind)):
        st = r.status
        summary = st.eval_summary
        result = ""
        if summary is not None:
            result = f"success {summary.rate_with_ci()}, {summary.episodes} episodes"
        elif st.get("loss") is not None:
            result = f"loss {st.get('loss'):.4f}"
        eta = fmt_duration(st.eta_s) if st.state == "running" and st.eta_s else ""
        what = " · ".join(x for x in (r.method, r.task) if x)
        data.append([r.run_id, JOB_NAMES.get(r.job, r.job), _cell(r.name), what, st.state,
                     f"{st.step:,}/{st.total_steps:,}" if st.total_steps else f"{st.step:,}", eta, result,
                     _cell(st.error)])
    return pd.DataFrame(data, columns=RUN_COLUMNS)


def settings_diff_table(ctx: AppContext, run_ids: Sequence[str]):
    """The settings in which the runs' ``config.yaml`` differ: one row per setting, one column per run."""
    import pandas as pd

    configs = [ctx.run(rid).read_config() for rid in run_ids]
    diff = config_diff(configs)
    rows = [[key, *[("" if v is None else _cell(v)) for v in values]] for key, values in diff.items()]
    return pd.DataFrame(rows, columns=["setting", *run_ids])


__all__ = ["ALL_JOBS", "JOB_NAMES", "RUN_COLUMNS", "runs_table", "settings_diff_table"]
