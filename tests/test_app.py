"""The Gradio workbench end to end: the app builds, serves on a free port, and each tab's main action
works through ``gradio_client`` (generate a dataset, inspect it, build a model, train live and stop,
roll out, benchmark); bad inputs give a message and the app keeps serving."""

from __future__ import annotations

import json
import os
import tempfile
import socket
import time
from pathlib import Path

import pytest

from vla_engine.train.methods import PLANNED_METHODS

gr = pytest.importorskip("gradio")
from gradio_client import Client  # noqa: E402

from app import AppContext, build_app, launch  # noqa: E402

API_NAMES = {
    "train_start", "train_stop", "train_resume", "train_poll", "train_runs", "train_attach", "train_watch",
    "train_preset", "train_method", "train_dataset", "train_overlay",
    "datasets_refresh", "dataset_generate", "dataset_poll", "dataset_info", "dataset_episode", "dataset_frame",
    "model_defaults", "model_summary", "model_forward", "model_save_preset",
    "rollout_refresh", "rollout_checkpoint", "rollout_start", "rollout_poll", "rollout_show", "rollout_episode",
    "bench_refresh", "bench_start", "bench_poll", "bench_add_tasks",
}


def skipped(value) -> bool:
    """An output the handler left as it was (gradio_client gives the bare update)."""
    return isinstance(value, dict) and value.get("__type__") == "update" and "value" not in value


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(fn, timeout: float, every: float = 0.5):
    """Call ``fn`` until it returns something truthy; that value, or fail after ``timeout`` seconds."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"condition not met in {timeout:.0f} s; last value: {last!r}")


def say(client, *args, **kwargs):
    """The message of an action endpoint (its first output: the status line; the rest are widget updates)."""
    out = client.predict(*args, **kwargs)
    return out[0] if isinstance(out, (tuple, list)) and out and isinstance(out[0], str) else out


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("app")
    ctx = AppContext.create(root / "runs", root / "datasets")
    demo = build_app(ctx)
    port = free_port()
    launch(demo, ctx, port=port, prevent_thread_lock=True, quiet=True)
    url = f"http://127.0.0.1:{port}/"
    client = Client(url, verbose=False)
    yield ctx, client, url, demo
    for r in ctx.runner.list_runs():
        if r.status.active:
            ctx.runner.stop(r.run_id, timeout=10)
    demo.close()


@pytest.fixture(scope="module")
def dataset(served):
    """The built-in reach dataset, 3 episodes, generated through the Datasets tab."""
    ctx, client, _, _ = served
    msg = say(client, task="reach", name="reach", episodes=3, seed=0, size=96, overwrite=False, plan=4,
                         api_name="/dataset_generate")
    assert "Generating" in msg, msg

    def ready():
        status = client.predict(api_name="/dataset_poll")[0]
        assert "Generation failed" not in str(status), status
        return "is ready" in str(status)

    wait_for(ready, 90)
    return "reach"


@pytest.fixture(scope="module")
def trained(served, dataset):
    """A training run started from the Training tab, watched until metrics arrive, then stopped."""
    ctx, client, url, _ = served
    overrides = "\n".join(["training.max_steps=5000", "training.log_every=2", "training.batch_size=8",
                           "training.save_every=100000", "dataset.episodes=3", "eval.episodes=2"])
    msg = say(client, preset="quickstart", dataset=dataset, run_name="apptest", overrides=overrides,
                         api_name="/train_start")
    assert msg.startswith("Started **"), msg
    run_id = msg.split("**")[1]

    shown: dict = {}  # what the page shows: a poll sends only what changed since the last one

    def curve():
        out = client.predict(api_name="/train_poll")
        shown.update((k, v) for k, v in zip(("status", "progress", "log", "loss"), out) if not skipped(v))
        assert "failed" not in str(shown.get("status")), (shown.get("status"), shown.get("log"))
        loss_plot = shown.get("loss")
        traces = json.loads(loss_plot["plot"])["data"] if isinstance(loss_plot, dict) else []
        has_points = bool(traces and traces[0].get("y"))
        return loss_plot if has_points and "step" in str(shown.get("progress")) else None

    loss_plot = wait_for(curve, 120)
    # a restarted app finds the running job, and a new browser session re-attaches to it
    from app.tabs.training import newest_active_train_run

    assert newest_active_train_run(AppContext.create(ctx.runs_dir, ctx.datasets_dir)) == run_id
    other = Client(url, verbose=False)
    other.predict(api_name="/train_attach")
    assert run_id in other.predict(api_name="/train_poll")[0]
    stopped = client.predict(api_name="/train_stop")
    assert "stopped" in stopped or "done" in stopped, stopped
    return run_id, loss_plot


def test_app_builds_with_named_endpoints(served):
    _, client, _, demo = served
    names = {d.get("api_name") for d in demo.config["dependencies"]}
    assert API_NAMES <= names, API_NAMES - names
    assert {f"/{n}" for n in API_NAMES} <= set(client.view_api(return_format="dict", print_info=False)
                                                ["named_endpoints"])


def test_bad_inputs_give_messages_and_the_app_keeps_serving(served):
    ctx, client, _, _ = served
    msg = say(client, preset="quickstart", overrides="training.learning_rate=-1", api_name="/train_start")
    assert msg.startswith("**Error:**") and "training.learning_rate" in msg and "\n" not in msg
    msg = say(client, preset="quickstart", training__batch_size=0, api_name="/train_start")
    assert "training.batch_size" in msg
    msg = say(client, preset="quickstart", dataset="../../etc", api_name="/train_start")
    assert "not allowed" in msg
    msg = say(client, preset="quickstart", overrides="dataset.root=/etc", api_name="/train_start")
    assert "outside" in msg
    planned = next(iter(PLANNED_METHODS), None)  # a method whose trainer is not in this version, if any
    if planned:
        msg = say(client, preset="quickstart", method=planned, dataset="push", api_name="/train_start")
        assert "not built" in msg
    # unknown checkpoint / path traversal in the Rollouts tab
    status = say(client, "no-such-run", "reach", "", 1, 0, 1_000_000, None, None, "", api_name="/rollout_start")
    assert "no run named 'no-such-run'" in status
    status = say(client, "../etc", "reach", "", 1, 0, 1_000_000, None, None, "", api_name="/rollout_start")
    assert "not allowed" in status
    # out-of-range numbers
    status = say(client, "reach", "bad", 0, 0, 96, False, 0, api_name="/dataset_generate")
    assert "dataset.episodes" in status
    out = client.predict("../secret", api_name="/dataset_info")
    assert "not allowed" in out[0]
    out = client.predict(batch_size=64, precision="fp32", model__llm_hidden_size=130, api_name="/model_summary")
    assert "llm_hidden_size" in out[0]
    status = say(client, [], ["reach"], 5, 0, None, api_name="/bench_start")
    assert "no checkpoints" in status
    # the job limit (a Space allows one job at a time) is a message too
    from vla_engine.runs.run_dir import RunDir

    busy = RunDir.create(ctx.runs_dir, "busy-job", {"job": "datagen", "task": "reach"})
    busy.write_status("running")  # this test process's pid: alive
    ctx.runner.max_concurrent = 1
    try:
        msg = say(client, preset="quickstart", dataset="reach", api_name="/train_start")
        assert "limit 1" in msg, msg
    finally:
        ctx.runner.max_concurrent = None
        busy.write_status("done")
    # ... and the app still answers
    table = client.predict(api_name="/datasets_refresh")[0]
    assert "headers" in table
    assert not ctx.list_runs("train")  # nothing was started by the bad inputs


def test_dataset_facts_and_episode_browser(served, dataset):
    _, client, _, _ = served
    info, stats, ep, fr, image, instruction, state_plot, action_plot, bev, imu = client.predict(
        dataset, api_name="/dataset_info")
    assert "no lidar or radar" in bev["plot"]  # a camera-only dataset: the sensor plots say so (and stay hidden)
    assert "**3** episodes" in info and "instruction" in info
    assert "expert plans of **4** steps" in info  # generated with plan steps 4
    assert {r[0] for r in stats["data"]} >= {"action", "observation.state"}
    assert instruction and image
    image, instruction, state_plot, action_plot, _bev, _imu, frame, note = client.predict(
        dataset, 1, api_name="/dataset_episode")
    assert instruction and not note
    out = client.predict(dataset, 1, 1, api_name="/dataset_frame")
    assert out[1] == instruction and out[-1] == ""
    from gradio_client.exceptions import AppError as ClientAppError

    with pytest.raises(ClientAppError, match="greater than maximum"):  # the slider's own bound
        client.predict(dataset, 99, api_name="/dataset_episode")
    assert client.predict(dataset, 0, api_name="/dataset_episode")[1]  # still serving


def test_minari_datasets_listed_and_browsed_next_to_lerobot_ones(served, dataset):
    """A Minari dataset under datasets/minari (made with minari's DataCollector) is listed as minari:<id> and
    browses episode by episode: state and action curves, no camera, the return and the reference scores."""
    from vla_engine.data.minari_io import make_level_datasets

    ctx, client, _, _ = served
    make_level_datasets("Pendulum-v1", {}, episodes=2, root=ctx.datasets_dir / "minari", levels=("random",))
    table = client.predict(api_name="/datasets_refresh")[0]
    names = [r[0] for r in table["data"]]
    assert "minari:vla/pendulum/random-v0" in names and dataset in names
    info, stats, ep, fr, image, instruction, state_plot, action_plot, bev, imu = client.predict(
        "minari:vla/pendulum/random-v0", api_name="/dataset_info")
    assert "**2** episodes" in info and "Pendulum-v1" in info and "no camera" in info, info
    assert {r[0] for r in stats["data"]} == {"action", "observation.state"}
    assert image is None and fr["maximum"] >= 100  # 200-step episodes, one slider position per step
    out = client.predict("minari:vla/pendulum/random-v0", 1, 5, api_name="/dataset_frame")
    assert out[-1] == ""  # no error note
    # ... and offline BC trains on it from the Training tab (the dataset box offers minari:<id>)
    action_dim, state_dim, eval_task, status = client.predict("minari:vla/pendulum/random-v0", 0,
                                                              api_name="/train_dataset")
    assert action_dim["value"] == 1 and "1-D actions, 3-D state" in status, status
    assert eval_task["value"] == "gym/Pendulum-v1"  # evaluated in the env the data was recorded in
    overrides = "\n".join(["training.max_steps=40", "training.log_every=10", "eval.episodes=1", "eval.num_videos=0",
                           "eval.task=gym/Pendulum-v1"])  # what the form shows now (the client sends its defaults)
    msg = say(client, preset="il-bc-minari", method="offline-bc", dataset="minari:vla/pendulum/random-v0", run_name="minaribc",
              overrides=overrides, api_name="/train_start")
    assert msg.startswith("Started **"), msg
    run = ctx.run(msg.split("**")[1])
    wait_for(lambda: not run.read_status().active, 120)
    st = run.read_status()
    assert st.state == "done", st.error
    cfg = run.read_config()
    assert cfg["dataset"]["minari_id"] == "vla/pendulum/random-v0" and cfg["method"] == "offline-bc"
    assert st.eval["eval/episodes"] == 1 and "train/loss" in run.metrics_path.read_text()


def test_model_builder_counts_forward_and_saves_a_preset(served, dataset):
    ctx, client, _, _ = served
    status, params, memory, tree, _ = client.predict(batch_size=32, precision="bf16-mixed",
                                                     api_name="/model_summary")
    assert "total" in params and "trainable" in params and "activations" in memory
    assert tree.startswith("model (VLAModel)")
    status, report = client.predict(sample="synthetic sample", api_name="/model_forward")
    assert "Predicted action chunk" in report and "ms per chunk" in report, status
    status, report = client.predict(sample=dataset, model__action_dim=2, api_name="/model_forward")
    assert "dataset **reach**" in status and "(1, 1, 2)" in report
    msg = client.predict(preset_name="mine", base_preset="quickstart", api_name="/model_save_preset")
    assert (ctx.user_presets_dir / "mine.yaml").exists(), msg
    assert ("user/mine (saved)", "user/mine") in ctx.preset_choices()


def test_training_live_curves_stop_and_runs_list(served, trained):
    ctx, client, _, _ = served
    run_id, loss_plot = trained
    st = ctx.runner.status(run_id)
    assert st.state == "stopped" and ctx.run(run_id).last_checkpoint() is not None
    rows, _ = ctx.run(run_id).read_metrics(0)
    assert any("train/loss" in r for r in rows)
    table = client.predict(api_name="/train_runs")[0]
    assert any(row[0] == run_id and row[4] == "stopped" for row in table["data"])
    fig, note, _diff = client.predict([run_id], "train/loss", 0.6, api_name="/train_overlay")
    assert note == "1 run(s)" and "loss: overlay" in fig["plot"]


def test_rollouts_and_benchmark(served, trained):
    ctx, client, _, _ = served
    run_id, _ = trained
    ckpt, evals, task = client.predict(None, api_name="/rollout_refresh")
    assert ckpt["value"] == run_id and task["value"] == "reach"  # the newest checkpoint, its task
    task, instruction, note = client.predict(f"{run_id}/nope", api_name="/rollout_checkpoint")
    assert "no checkpoint 'nope'" in note
    out = client.predict(run_id, api_name="/rollout_show")
    assert "no evaluation results yet" in out[0]
    status = say(client, run_id, "push", "", 1, 1, 1_000_000, 4, None, "", api_name="/rollout_start")
    assert status.startswith("Started"), status  # push also takes 2-D actions: allowed
    status = say(client, run_id, "pick-place", "", 1, 1, 1_000_000, 4, None, "", api_name="/rollout_start")
    assert "4-D actions" in status
    status = say(client, run_id, "reach", "", 1, 1, 1_000_000, 4, 2, "", api_name="/rollout_start")
    assert "n_action_steps" in status and "chunk_size" in status  # a one-action model has no chunk to run 2 of
    status = say(client, run_id, "reach", "", 1, 1, 1_000_000, 4, None, "soon", api_name="/rollout_start")
    assert "not a number" in status
    status = say(client, run_id, "reach", "touch the green block", 1, 1, 1_000_000, 4, None, "off",
                            api_name="/rollout_start")
    assert status.startswith("Started"), status

    def rollout_done():
        out = client.predict(api_name="/rollout_poll")
        assert "failed" not in str(out[0]), out[0]
        return out if "done" in str(out[0]) else None

    out = wait_for(rollout_done, 90)
    status, progress, summary, table, gallery, ep, video, action_plot = out[:8]
    evaluations = out[-1]  # the Evaluations list refreshes when an evaluation ends, the new one chosen
    assert evaluations["value"] and evaluations["value"] in [c[1] for c in evaluations["choices"]]
    assert "success" in summary and len(table["data"]) == 1
    assert table["data"][0][2] == "touch the green block"
    assert len(gallery) == 1 and str(gallery[0]["video"]).endswith(".mp4"), gallery
    assert "seed 1000000" in gallery[0]["caption"]
    video, action_plot, note = client.predict(0, api_name="/rollout_episode")
    assert video and '"y":[' in str(action_plot.get("plot"))

    checkpoints, tasks = client.predict([], api_name="/bench_refresh")
    assert checkpoints["value"] == [run_id] and tasks["value"] == ["reach"]  # the tasks follow the checkpoint
    status = say(client, [run_id], ["reach"], 1, 0, 3, api_name="/bench_start")
    assert "Queued **1**" in status, status

    def board_row():
        _, queue_md, chart, board = client.predict(api_name="/bench_poll")[:4]
        return board["data"] if isinstance(board, dict) and board.get("data") else None

    data = wait_for(board_row, 90, every=1.0)
    assert data[0][0] == run_id and data[0][1] == "reach" and "–" in data[0][3] and data[0][4] == "leader"
    rows = ctx.leaderboard.read()
    assert rows[0]["ms_per_step"] > 0 and 0 <= rows[0]["ci_low"] <= rows[0]["success_rate"] <= rows[0]["ci_high"]
    assert rows[0]["seed_start"] == 1_000_000 and len(rows[0]["outcomes"]) == rows[0]["episodes"] == 1  # per seed


def test_shipped_checkpoint_rolls_out_on_a_fresh_start(served):
    """The checkpoint bundled with the package is offered and runs without any training first."""
    from vla_engine.pretrained import list_shipped

    shipped = [s["name"] for s in list_shipped()]
    assert "reach-tiny" in shipped
    _, _, url, _ = served
    client = Client(url, verbose=False)  # a fresh browser session
    ckpt, _, _ = client.predict(None, api_name="/rollout_refresh")
    assert "shipped:reach-tiny" in [c[1] for c in ckpt["choices"]]
    task, _, note = client.predict("shipped:reach-tiny", api_name="/rollout_checkpoint")
    assert task["value"] == "reach" and "shipped:reach-tiny" in note
    status = say(client, "shipped:reach-tiny", "reach", "", 2, 1, 1_000_000, None, None, "",
                 api_name="/rollout_start")
    assert status.startswith("Started"), status

    def rollout_done():
        out = client.predict(api_name="/rollout_poll")
        assert "failed" not in str(out[0]), out[0]
        return out if "done" in str(out[0]) else None

    summary, table = wait_for(rollout_done, 120)[2:4]
    assert "success" in summary and len(table["data"]) == 2
    assert say(client, ["shipped:reach-tiny"], ["reach"], 1, 0, 10, api_name="/bench_start").startswith("Queued")


def test_preset_box_reads_only_presets(served, tmp_path, monkeypatch):
    """A bare file name or a path in the preset box is refused: presets come from the preset folders and
    the user's saved presets, never from the server's working directory."""
    _, client, _, _ = served
    monkeypatch.chdir(tmp_path)
    (tmp_path / "other.yaml").write_text("name: secret-from-cwd\n")
    for name in ("other.yaml", "../x.yaml", "other", "/etc/passwd", "user/../other"):
        out = client.predict(name, api_name="/train_preset")
        assert out[-1].startswith("**Error:**") and "secret-from-cwd" not in str(out), (name, out[-1])
        msg = say(client, preset=name, dataset="reach", api_name="/train_start")
        assert msg.startswith("**Error:**") and "\n" not in msg, (name, msg)
    assert "is not a preset; choose one of: " in client.predict("other.yaml", api_name="/train_preset")[-1]
    assert "finetune-lora" in client.predict("finetune-lora", api_name="/train_preset")[-1]


def test_training_form_follows_preset_method_and_dataset(served):
    _, client, _, _ = served
    returns = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    out = client.predict("finetune-lora", api_name="/train_preset")
    labels = [r["label"] for r in returns["/train_preset"]["returns"]]
    assert out[0]["value"] == "sft" and "finetune-lora" in out[-1]
    by_label = dict(zip(labels, out))  # training fields come after the model's, so they win on a shared label
    assert by_label["Use LoRA"] == {"visible": True, "value": True, "__type__": "update"}
    out = client.predict("ppo", api_name="/train_method")
    labels = [r["label"] for r in returns["/train_method"]["returns"]]
    by_label = dict(zip(labels, out))
    assert ("not built" in out[-1]) == ("ppo" in PLANNED_METHODS)
    assert by_label["Total timesteps"]["visible"] and not by_label["Use LoRA"]["visible"]
    action_dim, state_dim, _eval_task, note = client.predict("pick-place", 0, api_name="/train_dataset")
    assert action_dim["value"] == 4 and "4-D actions" in note


def chrome(window: str = "1400,2200"):
    """Headless Chromium driven through Debian's chromedriver (no browser download), or a skip."""
    chromium = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if os.path.exists(p)), None)
    if chromium is None or not os.path.exists("/usr/bin/chromedriver"):
        pytest.skip("headless Chromium / chromedriver are not installed (apt: chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    # no background networking (update checks, sync, QUIC): those connections hang on a machine without
    # internet. (Chromium 156's --screenshot with --virtual-time-budget never returns on the Training tab.)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
                "--disable-quic", f"--window-size={window}", f"--user-data-dir={tempfile.mkdtemp(prefix='vla-chrome-')}"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    driver.set_page_load_timeout(60)
    return driver


SELECTED_TAB = "return [...document.querySelectorAll('[role=tab][aria-selected=true]')].map(b => b.innerText)"
EVENT_CALLS = ("return performance.getEntriesByType('resource').map(e => e.name)"
               ".filter(n => n.includes('/gradio_api/') && (n.includes('/queue/join') || n.includes('/run/'))).length")


def open_tab(driver, url: str, tab: str) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    from selenium.common.exceptions import TimeoutException

    selected = lambda d: [t.strip().lower()[:len(tab)] for t in d.execute_script(SELECTED_TAB)]  # noqa: E731
    # the page opens on the first tab; the app's load event then selects the one in the URL. A cold browser on a
    # loaded machine can miss the first page's load event: one more load of the page, then a clear failure
    for attempt in range(2):
        driver.get(f"{url}?tab={tab}")
        try:
            WebDriverWait(driver, 60).until(lambda d: selected(d) == [tab])
            return
        except TimeoutException:
            if attempt:
                raise AssertionError(f"?tab={tab} did not select that tab: selected {selected(driver)}") from None


def test_screenshots_of_each_tab(served, artifacts_dir):
    """Each tab opened by its URL in headless Chromium: the tab is the selected one, and its screenshot is
    written to test-artifacts/."""
    from app.main import TAB_IDS

    _, _, url, _ = served
    driver = chrome()
    try:
        for tab in TAB_IDS:
            out = Path(artifacts_dir) / f"app-{tab}.png"
            open_tab(driver, url, tab)
            time.sleep(1.0)  # let the tab's first values arrive
            driver.save_screenshot(str(out))
            assert out.exists() and out.stat().st_size > 10_000, tab
    finally:
        driver.quit()


@pytest.mark.timeout(900)
def test_quick_start_steps_3_and_4_in_a_browser_with_the_defaults(served, artifacts_dir):
    """As the page's Quick Start says, in a real browser: an idle page makes no calls; in Rollouts, "Run episodes"
    with the default values runs (optional numbers are empty, not 0) and shows its result; in Benchmark, "Run
    benchmark" with the defaults fills the leaderboard."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    ctx, _, url, _ = served
    driver = chrome("1400,1800")
    page = lambda d: d.find_element(By.TAG_NAME, "body").text  # noqa: E731

    def click(label: str) -> None:
        button = next(b for b in driver.find_elements(By.TAG_NAME, "button") if b.text.strip() == label
                      and b.is_displayed())
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'}); arguments[0].click();", button)

    try:
        open_tab(driver, url, "rollouts")
        time.sleep(3.0)  # the load events finish
        before = driver.execute_script(EVENT_CALLS)
        time.sleep(6.0)
        assert driver.execute_script(EVENT_CALLS) == before  # nothing runs: the open page makes no calls
        optional = [e.get_attribute("value") for e in driver.find_elements(
            By.XPATH, "//label[contains(., '(empty:')]//*[self::textarea or self::input]")]
        assert len(optional) >= 2 and all(v == "" for v in optional), optional  # max steps, actions per chunk
        click("Run episodes")
        WebDriverWait(driver, 180, 1.0).until(lambda d: "done." in page(d) or "Error" in page(d))
        assert "Error" not in page(driver) and "success" in page(driver).lower(), page(driver)[-1500:]
        # ... and the episodes' videos are on the page
        WebDriverWait(driver, 30, 1.0).until(lambda d: d.find_elements(By.CSS_SELECTOR, "video"))
        driver.save_screenshot(str(Path(artifacts_dir) / "quickstart-rollouts.png"))

        open_tab(driver, url, "benchmark")
        time.sleep(3.0)
        results = len(ctx.leaderboard.read())
        click("Run benchmark")
        # 20 episodes by default: minutes on a loaded 2-core machine
        WebDriverWait(driver, 480, 1.0).until(lambda d: len(ctx.leaderboard.read()) > results or "Error" in page(d))
        assert "Error" not in page(driver), page(driver)[-1500:]
        ran = ctx.leaderboard.read()[-1]
        # the page shows the new row: its evaluation run's id in the leaderboard table
        WebDriverWait(driver, 60, 1.0).until(lambda d: ran["eval_run"] in page(d))
        driver.save_screenshot(str(Path(artifacts_dir) / "quickstart-benchmark.png"))
    finally:
        driver.quit()


def test_second_half_parts_in_the_tabs(served):
    """The driving world's sensors in the Datasets tab, the multi-sensor model in the Model builder, and the
    task families and suites (Meta-World MT10) in the Benchmark tab."""
    from vla_engine.data.datagen import generate_dataset

    ctx, client, _, _ = served
    generate_dataset("driving/stop-behind", 1, ctx.datasets_dir / "drive", progress=False)
    out = client.predict("drive", api_name="/dataset_info")
    plots = [json.loads(v["plot"]) for v in out if isinstance(v, dict) and "plot" in v]
    bev = next(p for p in plots if "bird" in str(p["layout"].get("title")))
    assert any(t.get("name", "").startswith("lidar (") for t in bev["data"])  # the point cloud is drawn

    status, params, memory, tree, _ = client.predict(batch_size=8, precision="fp32", model__action_dim=3,
                                                     model_sensors__enabled=True, api_name="/model_summary")
    assert tree.startswith("model (MultiSensorVLA)") and "sensor_encoders" in tree
    status, report = client.predict(sample="synthetic sample", model__action_dim=3, model_sensors__enabled=True,
                                    api_name="/model_forward")
    assert "Predicted action chunk" in report, (status, report)

    groups = ctx.task_groups()
    assert {"tabletop", "driving"} <= set(groups) and "reach" in groups["tabletop"]
    if "metaworld/mt10" in groups:
        tasks, _ = client.predict("metaworld/mt10", ["reach"], api_name="/bench_add_tasks")[:2]
        assert tasks["value"][0] == "reach" and len(tasks["value"]) == 11


def test_rl_preset_trains_from_the_training_tab_and_rolls_out(served):
    """An RL preset as a user runs it: pick it (the form fills from it), Start, watch its return curve; then the
    RL checkpoint runs in the Rollouts tab with the defaults."""
    ctx, client, _, _ = served
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    params = [p["parameter_name"] for p in api["/train_start"]["parameters"]]
    filled = client.predict("rl-ppo-pendulum", api_name="/train_preset")
    # /train_preset answers the form's widgets in the order /train_start takes them (after the preset box)
    form = {name: v["value"] if isinstance(v, dict) else v for name, v in zip(params[1:], filled[:-1])
            if not skipped(v)}
    form.update(overrides="training.total_timesteps=2048\neval.episodes=2", run_name="ppo-ui")
    msg = say(client, preset="rl-ppo-pendulum", **form, api_name="/train_start")
    assert msg.startswith("Started **"), msg
    run_id = msg.split("**")[1]

    def finished():
        out = client.predict(api_name="/train_poll")
        st = ctx.runner.status(run_id)
        assert st.state != "failed", st.error
        return out if st.state == "done" else None

    wait_for(finished, 240, every=1.0)
    curves = ctx.watch(run_id)
    from app.curves import panels_for

    assert panels_for(set(curves.curves.points))[0][0] == "charts/episodic_return"  # the RL panels
    assert ctx.run(run_id).read_config()["training"]["total_timesteps"] == 2048
    task, _, note = client.predict(run_id, api_name="/rollout_checkpoint")
    assert task["value"] == "gym/InvertedPendulum-v5", note
    status = say(client, run_id, "gym/InvertedPendulum-v5", "", 2, 1, 1_000_000, "", "", "", api_name="/rollout_start")
    assert status.startswith("Started"), status

    def rollout_done():
        out = client.predict(api_name="/rollout_poll")
        assert "failed" not in str(out[0]), out[0]
        return out if "done" in str(out[0]) else None

    summary = wait_for(rollout_done, 120)[2]
    assert "mean return" in summary, summary
