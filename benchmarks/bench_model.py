"""Training and inference speed of the named VLA defaults on this machine.

    python benchmarks/bench_model.py                  # tiny and siglip-tiny, 2 threads
    python benchmarks/bench_model.py --models tiny small resnet18 --steps 30 --threads 2

Training: samples/s of forward + backward + AdamW step on 96x96 images, batch 64, a 2-d state,
two distinct instructions per batch (median step time, so a stray slow step does not skew it).
Inference: ms per ``select_action`` call at batch 1 with chunk_size 1 (a full forward every action).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("USE_TF", "0")  # transformers must not import TensorFlow (slow, noisy)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from vla_engine.models import create_vla_model  # noqa: E402


def bench_train(name: str, steps: int, batch_size: int, image_size: int) -> dict:
    torch.manual_seed(0)
    model = create_vla_model(name, action_dim=2, state_dim=2, image_size=image_size)
    model.train()
    b = batch_size
    batch = {
        "observation.images.front": torch.rand(b, 3, image_size, image_size),
        "observation.state": torch.randn(b, 2),
        "task": ["reach the red block" if i % 2 else "reach the blue block" for i in range(b)],
        "action": torch.randn(b, 1, 2),
        "action_is_pad": torch.zeros(b, 1, dtype=torch.bool),
    }
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    times = []
    for i in range(steps + 3):
        t0 = time.perf_counter()
        loss, _ = model(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= 3:  # warm-up steps excluded
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return {"params": model.num_parameters(), "trainable": model.num_parameters(trainable_only=True),
            "samples_per_s": b / med, "samples_per_s_mean": b * len(times) / sum(times), "step_ms": 1000 * med}


def bench_infer(name: str, calls: int, image_size: int) -> float:
    torch.manual_seed(0)
    model = create_vla_model(name, action_dim=2, state_dim=2, image_size=image_size).eval()
    env_obs = {"pixels": np.zeros((image_size, image_size, 3), np.uint8), "agent_pos": np.zeros(2, np.float32)}
    times = []
    for i in range(calls + 5):
        t0 = time.perf_counter()
        obs = model.prepare_observation(env_obs, "reach the red block")
        model.select_action(obs)
        if i >= 5:
            times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["tiny", "siglip-tiny"])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--image-size", type=int, default=96)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--infer-calls", type=int, default=50)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {args.image_size}x{args.image_size}, "
          f"batch {args.batch_size}, {args.steps} timed steps")
    print(f"{'model':14s} {'params':>10s} {'train samples/s':>16s} {'(mean)':>8s} {'step ms':>8s} {'ms/action':>10s}")
    for name in args.models:
        tr = bench_train(name, args.steps, args.batch_size, args.image_size)
        ms = bench_infer(name, args.infer_calls, args.image_size)
        print(f"{name:14s} {tr['params']:>10,} {tr['samples_per_s']:>16.0f} {tr['samples_per_s_mean']:>8.0f} "
              f"{tr['step_ms']:>8.0f} {ms:>10.2f}", flush=True)


if __name__ == "__main__":
    main()
