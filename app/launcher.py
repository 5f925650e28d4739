"""Open the VLA Workbench in a browser: ``python launch.py`` or ``vla ui`` (http://127.0.0.1:7860).

Everything works offline on a CPU: the Quick Start path (generate the built-in reach dataset, train
the quickstart preset, watch rollouts, benchmark) needs no download and no typed path.
"""

from __future__ import annotations

import argparse
import os
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="VLA Workbench: the browser app over vla_engine")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    p.add_argument("--runs-dir", default=os.environ.get("VLA_RUNS_DIR", "runs"), help="where run folders live")
    p.add_argument("--datasets-dir", default=os.environ.get("VLA_DATASETS_DIR", "datasets"),
                   help="where local LeRobot datasets live")
    p.add_argument("--max-jobs", type=int, default=0,
                   help="background jobs allowed at once (0 = no limit)")
    p.add_argument("--cpu-only", action="store_true", help="train on the CPU even when a GPU is present")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from app import AppContext, build_app, launch

    ctx = AppContext.create(args.runs_dir, args.datasets_dir, max_concurrent=args.max_jobs or None,
                            cpu_only=args.cpu_only)
    demo = build_app(ctx)
    launch(demo, ctx, host=args.host, port=args.port, share=args.share)
    return 0


if __name__ == "__main__":
    sys.exit(main())
