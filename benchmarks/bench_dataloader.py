"""Frames/s of lerobot's own DataLoader vs vla_engine's decode-once loader, side by side.

Both read the same LeRobot v3 dataset with the same delta_timestamps (``--n-obs-steps`` history,
``--chunk-size`` action chunk), shuffled batches of ``--batch-size``. Rounds alternate A/B
(lerobot, then ours, ...) so drift of the machine hits both; the medians and their ratio are
reported. Our loader's one-time cache build is timed separately (it is paid once per dataset).

    python benchmarks/bench_dataloader.py                       # generates datasets/bench-push
    python benchmarks/bench_dataloader.py --root datasets/push --repo-id local/push
    python benchmarks/bench_dataloader.py --num-workers 2 --json results.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path


def _frames_per_s(loader, max_batches: int) -> float:
    it = iter(loader)
    next(it)  # warm-up batch: worker start, first file opens
    n = 0
    t0 = time.perf_counter()
    for i, batch in enumerate(it):
        n += len(batch["index"])
        if i + 1 >= max_batches:
            break
    return n / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default="datasets/bench-push", help="dataset folder (generated if missing)")
    p.add_argument("--repo-id", default="local/bench-push")
    p.add_argument("--task", default="push", help="task to generate when --root is missing")
    p.add_argument("--episodes", type=int, default=50, help="episodes to generate when --root is missing")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--chunk-size", type=int, default=16)
    p.add_argument("--n-obs-steps", type=int, default=1)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--batches", type=int, default=20, help="timed batches per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)

    import torch

    from vla_engine.data import LeRobotVLADataset, create_lerobot_dataloader, generate_dataset

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    root = Path(args.root)
    if not (root / "meta" / "info.json").is_file():
        print(f"generating {args.episodes} '{args.task}' episodes into {root} ...", flush=True)
        t = time.perf_counter()
        generate_dataset(args.task, args.episodes, root, repo_id=args.repo_id, overwrite=True)
        print(f"  generated in {time.perf_counter() - t:.1f} s", flush=True)

    t = time.perf_counter()
    ours_ds = LeRobotVLADataset(args.repo_id, root=root, n_obs_steps=args.n_obs_steps, chunk_size=args.chunk_size)
    fresh = not any((ours_ds._cache_path).glob("*.npy"))
    ours_ds.build_cache()
    cache_s = time.perf_counter() - t
    lerobot_ds = ours_ds.lerobot  # lerobot's LeRobotDataset, same delta_timestamps
    print(
        f"dataset {root}: {ours_ds.num_frames} frames, {ours_ds.num_episodes} episodes, image "
        f"{ours_ds.image_shape}, delta_timestamps keys {sorted(ours_ds.delta_timestamps)}; "
        f"open + cache {'build' if fresh else 'reuse'} {cache_s:.2f} s",
        flush=True,
    )

    gen_a = torch.Generator().manual_seed(0)
    lerobot_loader = torch.utils.data.DataLoader(
        lerobot_ds, batch_size=args.batch_size, shuffle=True, num_workers=args.num_workers,
        drop_last=True, generator=gen_a, persistent_workers=args.num_workers > 0,
    )
    ours_loader = create_lerobot_dataloader(
        ours_ds, batch_size=args.batch_size, shuffle=True, num_workers=args.num_workers, seed=0
    )

    res: dict[str, list[float]] = {"lerobot": [], "vla_engine": []}
    for r in range(args.rounds):
        a = _frames_per_s(lerobot_loader, args.batches)
        b = _frames_per_s(ours_loader, args.batches)
        res["lerobot"].append(a)
        res["vla_engine"].append(b)
        print(f"round {r + 1}/{args.rounds}: lerobot {a:9.0f} frames/s   vla_engine {b:9.0f} frames/s", flush=True)

    med_a = statistics.median(res["lerobot"])
    med_b = statistics.median(res["vla_engine"])
    out = {
        "dataset": str(root),
        "frames": ours_ds.num_frames,
        "batch_size": args.batch_size,
        "chunk_size": args.chunk_size,
        "n_obs_steps": args.n_obs_steps,
        "num_workers": args.num_workers,
        "cache_open_s": round(cache_s, 3),
        "cache_built": fresh,
        "lerobot_frames_per_s": res["lerobot"],
        "vla_engine_frames_per_s": res["vla_engine"],
        "lerobot_median": med_a,
        "vla_engine_median": med_b,
        "ratio": med_b / med_a,
    }
    print(f"median: lerobot {med_a:.0f} frames/s, vla_engine {med_b:.0f} frames/s, ratio {med_b / med_a:.1f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
