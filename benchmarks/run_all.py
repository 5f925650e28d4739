"""Run every benchmark in turn and print their figures (long: a few hours on 2 cores with the task tables; --quick: minutes).

    python benchmarks/run_all.py [--quick]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="skip the end-to-end task benchmarks")
    args = ap.parse_args()
    runs = [["bench_render.py"], ["bench_dataloader.py"], ["bench_model.py"], ["bench_loop_overhead.py"],
            ["bench_diffusion.py"], ["bench_ui.py"]]
    if not args.quick:
        runs += [["bench_tasks.py", "--task", "reach"], ["bench_tasks.py", "--task", "push", "--preset", "il-bc"],
                 ["bench_heads.py", "--task", "push"], ["bench_lora.py", "--task", "push"]]
    failed = 0
    for r in runs:
        print(f"\n=== {' '.join(r)}", flush=True)
        failed += subprocess.call([sys.executable, str(HERE / r[0]), *r[1:]]) != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
