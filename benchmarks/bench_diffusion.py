"""Sampling speed of the diffusion action head.

    python benchmarks/bench_diffusion.py                       # CPU, 1 thread, batch 1, 50 rounds
    python benchmarks/bench_diffusion.py --device cuda --batch-size 64 --rounds 50
    python benchmarks/bench_diffusion.py --rounds 5            # a quick check that it runs

(a) DDIM with 10 steps against DDPM with 100 steps: time per action chunk of ``head.sample()`` on
    one fixed feature batch (target: DDIM >= 8x faster).
(b) ``head.sample()`` against a bare diffusers scheduler loop written out below over the same
    denoiser network (target: ours <= 1.05x the bare loop, i.e. the head adds no overhead).

Each comparison alternates A and B round by round (so drift in machine load hits both alike) and
reports the medians and the median of the per-round ratios (the headline: paired rounds cancel drift).
The head has random weights: speed does not depend on what it learned. Measured figures:
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("USE_TF", "0")  # transformers must not import TensorFlow (slow, noisy)

import torch  # noqa: E402

from vla_engine.models import DiffusionActionHead  # noqa: E402


@torch.no_grad()
def bare_loop(denoiser, scheduler, features: torch.Tensor, steps: int, chunk: int, action_dim: int,
              generator: torch.Generator) -> torch.Tensor:
    """The textbook diffusers sampling loop (as in LeRobot's diffusion policy), nothing else."""
    scheduler.set_timesteps(steps)
    x = torch.randn((features.shape[0], chunk, action_dim), generator=generator, device=features.device)
    for t in scheduler.timesteps:
        out = denoiser(x, torch.full(x.shape[:1], int(t), dtype=torch.long, device=x.device), features)
        x = scheduler.step(out, t, x, generator=generator).prev_sample
    return x


def alternate(a, b, rounds: int, sync) -> tuple[list[float], list[float]]:
    """Time ``a()`` and ``b()`` in alternation (A B, B A, ...) after one warm-up call each."""
    a(), b()
    sync()
    ta, tb = [], []
    for i in range(rounds):
        order = ((a, ta), (b, tb)) if i % 2 == 0 else ((b, tb), (a, ta))
        for fn, times in order:
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - t0)
    return ta, tb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--feature-dim", type=int, default=256, help="the LM hidden size the head reads")
    ap.add_argument("--hidden-dim", type=int, default=256)
    ap.add_argument("--num-layers", type=int, default=3)
    ap.add_argument("--chunk-size", type=int, default=16)
    ap.add_argument("--action-dim", type=int, default=7)
    ap.add_argument("--rounds", type=int, default=50)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)

    torch.manual_seed(0)
    head = DiffusionActionHead(action_dim=args.action_dim, num_diffusion_steps=100, hidden_dim=args.hidden_dim,
                               input_dim=args.feature_dim, chunk_size=args.chunk_size, num_layers=args.num_layers,
                               num_inference_steps=10, use_ddim=True).to(dev).eval()
    feats = torch.randn(args.batch_size, args.feature_dim, device=dev)
    n_params = sum(p.numel() for p in head.parameters())
    print(f"torch {torch.__version__}, device {dev}, {args.threads} thread(s); denoiser {n_params / 1e6:.2f}M params "
          f"(hidden {args.hidden_dim} x {args.num_layers} blocks), features ({args.batch_size}, {args.feature_dim}), "
          f"chunk ({args.chunk_size}, {args.action_dim}); medians of {args.rounds} alternated rounds")

    # (a) DDIM-10 vs DDPM-100 through head.sample()
    gen = torch.Generator(device=dev).manual_seed(0)
    ddim, ddpm = alternate(lambda: head.sample(feats, 10, use_ddim=True, generator=gen),
                           lambda: head.sample(feats, 100, use_ddim=False, generator=gen), args.rounds, sync)
    m_ddim, m_ddpm = statistics.median(ddim), statistics.median(ddpm)
    ratio = statistics.median(p / d for p, d in zip(ddpm, ddim))
    print(f"(a) DDIM-10 {1e3 * m_ddim:8.2f} ms/chunk | DDPM-100 {1e3 * m_ddpm:8.2f} ms/chunk | "
          f"DDIM speed-up {ratio:5.2f}x (ratio of medians {m_ddpm / m_ddim:5.2f}x; target >= 8x: "
          f"{'met' if ratio >= 8 else 'NOT met'})")

    # (b) head.sample() vs the bare diffusers loop over the same denoiser, for both samplers
    fresh = {"ddim": type(head.ddim_scheduler).from_config(head.ddim_scheduler.config),
             "ddpm": type(head.ddpm_scheduler).from_config(head.ddpm_scheduler.config)}
    for name, steps in (("ddim", 10), ("ddpm", 100)):
        g1, g2 = torch.Generator(device=dev).manual_seed(1), torch.Generator(device=dev).manual_seed(1)
        ours_out = head.sample(feats, steps, use_ddim=name == "ddim", generator=g1)
        bare_out = bare_loop(head.denoiser, fresh[name], feats, steps, args.chunk_size, args.action_dim, g2)
        same = torch.allclose(ours_out, bare_out, atol=1e-5)  # the same computation, so the same chunk
        ours, bare = alternate(
            lambda: head.sample(feats, steps, use_ddim=name == "ddim", generator=gen),
            lambda: bare_loop(head.denoiser, fresh[name], feats, steps, args.chunk_size, args.action_dim, gen),
            args.rounds, sync)
        m_ours, m_bare = statistics.median(ours), statistics.median(bare)
        r = statistics.median(o / b for o, b in zip(ours, bare))
        print(f"(b) {name.upper()}-{steps:<3d} head.sample {1e3 * m_ours:8.2f} ms | bare diffusers loop "
              f"{1e3 * m_bare:8.2f} ms | ratio {r:5.3f} (ratio of medians {m_ours / m_bare:5.3f}; target <= 1.05: "
              f"{'met' if r <= 1.05 else 'NOT met'}) | same output: {same}")


if __name__ == "__main__":
    main()
