"""evaluate_policy: episode counts, held-out seeds, the instruction override, videos and their results file."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("mujoco")

from vla_engine.config.run_config import EVAL_SEED_START  # noqa: E402
from vla_engine.eval import EvalError, evaluate_policy  # noqa: E402
from vla_engine.models import VLAModel  # noqa: E402
from vla_engine.runs.jobs import resolve_checkpoint  # noqa: E402
from vla_engine.runs.schema import EvalSummary, format_eval  # noqa: E402


@pytest.fixture(scope="module")
def reach_policy():
    return VLAModel.from_pretrained(resolve_checkpoint("shipped:reach-tiny"))


@pytest.mark.parametrize("episodes", [0, -3, 2.5, True])
def test_bad_episode_counts_are_one_line_errors(reach_policy, episodes):
    with pytest.raises(EvalError, match=r"^episodes is .*at least 1 episode"):
        evaluate_policy(reach_policy, "reach", episodes=episodes, num_videos=0, progress=False)


def test_held_out_seeds_videos_and_results_file(reach_policy, tmp_path):
    seen = []
    res = evaluate_policy(reach_policy, "reach", episodes=3, num_videos=2, video_dir=tmp_path, progress=False,
                          on_episode=lambda i, n, row: seen.append((i, n, row["seed"])))
    assert [r["seed"] for r in res.episodes] == [EVAL_SEED_START, EVAL_SEED_START + 1, EVAL_SEED_START + 2]
    assert seen == [(0, 3, EVAL_SEED_START), (1, 3, EVAL_SEED_START + 1), (2, 3, EVAL_SEED_START + 2)]
    # a video for each of the first two episodes, named by seed and outcome, non-empty mp4s
    assert len(res.videos) == 2 and all(p.endswith(".mp4") for p in res.videos)
    for row, path in zip(res.episodes[:2], res.videos):
        assert str(row["seed"]) in path and ("success" if row["success"] else "fail") in path
        assert (tmp_path / row["video"]).stat().st_size > 1000
    assert "video" not in res.episodes[2]
    saved = json.loads((tmp_path / "reach-results.json").read_text())
    assert saved["summary"] == res.summary and len(saved["episodes"]) == 3
    s = EvalSummary.from_metrics(res.summary)
    assert s.episodes == 3 and s.successes == sum(r["success"] for r in res.episodes)
    assert s.ci_low <= s.success_rate <= s.ci_high
    assert format_eval(res.summary, "reach").startswith(f"reach: success {s.success_rate:.0%} (95% CI ")


def test_instruction_override_reaches_the_policy(reach_policy):
    """A typed instruction replaces the task's own in every step's observation and in the results."""
    texts = []
    original = reach_policy.prepare_observation

    def spy(obs, instruction=""):
        texts.append(instruction)
        return original(obs, instruction)

    reach_policy.prepare_observation = spy
    try:
        res = evaluate_policy(reach_policy, "reach", episodes=1, num_videos=0, progress=False,
                              instruction="touch the green block", max_episode_steps=5)
    finally:
        del reach_policy.prepare_observation
    assert texts and set(texts) == {"touch the green block"}
    assert res.episodes[0]["instruction"] == "touch the green block" and res.episodes[0]["length"] <= 5
