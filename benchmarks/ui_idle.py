"""What an open page costs while nothing runs: server CPU, browser CPU and API calls per minute.

Used by ``bench_ui.py --parts idle`` (and runnable alone against a served app). A headless Chromium (Debian's
chromium through its chromedriver, no browser download) opens the page on a tab, waits until the page's load
events are done, then sits idle for ``seconds``, with the page shown and then hidden (another tab selected).
It reads

* the server's CPU time from ``/proc/<pid>/stat`` (user + system, all its threads),
* the browser's CPU time: every process below chromedriver (the browser, its renderer and GPU processes),
* the page's calls to the app: the browser's own resource-timing entries for ``/gradio_api/`` requests that
  run an event (``queue/join``, ``run/``, ``call/``), so nothing in the app has to count for itself.

Target: under 2 % of a core on the server, and no calls at all while no job runs.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")
EVENT_CALLS = ("/queue/join", "/run/", "/call/")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (fields 14 and 15 of stat)


def descendants(root: int) -> list[int]:
    """Every live process below ``root`` (read from /proc: each process's parent)."""
    parents: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parents[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    out, frontier = [], [root]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parents.items() if pp == p]
        out += kids
        frontier += kids
    return out


def tree_cpu(root: int) -> float:
    total = 0.0
    for pid in descendants(root):
        try:
            total += cpu_seconds(pid)
        except OSError:  # ended meanwhile
            pass
    return total


def open_browser(chromium: str = "/usr/bin/chromium", driver_path: str = "/usr/bin/chromedriver"):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    # no background networking: those connections hang on a machine without internet
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--disable-quic", "--window-size=1400,1000",
                f"--user-data-dir={tempfile.mkdtemp(prefix='vla-idle-profile-')}"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(driver_path), options=opts)


def event_calls(driver) -> int:
    names = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name).filter(n => n.includes('/gradio_api/'))")
    return sum(1 for n in names if any(k in n for k in EVENT_CALLS))


def select_tab(driver, label_start: str) -> None:
    driver.execute_script(
        "const b = [...document.querySelectorAll('[role=tab]')].find(b => b.innerText.trim().toLowerCase()"
        ".startsWith(arguments[0])); if (b) b.click();", label_start)


def measure_idle(url: str, server_pid: int, seconds: float, tab: str = "training",
                 hide_to: str = "model") -> list[dict]:
    """Two idle phases of ``seconds`` each on one page: ``tab`` shown, then ``hide_to`` shown instead.

    Returns one dict per phase: server and browser CPU as a fraction of a core, calls per minute."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver = open_browser()
    phases = []
    try:
        driver.set_page_load_timeout(120)
        driver.get(f"{url.rstrip('/')}/?tab={tab}")
        driver.execute_script("performance.setResourceTimingBufferSize(1000000)")
        selected = "return [...document.querySelectorAll('[role=tab][aria-selected=true]')].map(b => b.innerText)"
        WebDriverWait(driver, 120).until(lambda d: any(t.strip().lower().startswith(tab) for t in d.execute_script(selected)))
        time.sleep(5.0)  # the page's load events (first values of every tab) finish
        browser_root = driver.service.process.pid
        for name, show in ((f"{tab} tab shown", None), (f"{tab} tab hidden ({hide_to} shown)", hide_to)):
            if show:
                select_tab(driver, show)
                time.sleep(2.0)
            c0, s0, b0, t0 = event_calls(driver), cpu_seconds(server_pid), tree_cpu(browser_root), time.time()
            time.sleep(seconds)
            c1, s1, b1, t1 = event_calls(driver), cpu_seconds(server_pid), tree_cpu(browser_root), time.time()
            wall = t1 - t0
            phases.append({"phase": name, "seconds": wall, "server_core": (s1 - s0) / wall,
                           "browser_core": (b1 - b0) / wall, "calls_per_min": (c1 - c0) * 60.0 / wall})
    finally:
        driver.quit()
    return phases


def print_idle(phases: list[dict]) -> None:
    print("idle page, no job running (target: server < 2 % of a core, no calls)")
    print(f"  {'phase':<38} {'server CPU':>11} {'browser CPU':>12} {'calls/min':>10}")
    for p in phases:
        print(f"  {p['phase']:<38} {100 * p['server_core']:>10.1f}% {100 * p['browser_core']:>11.1f}% "
              f"{p['calls_per_min']:>10.1f}")
