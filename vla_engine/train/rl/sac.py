"""SAC (soft actor-critic), CleanRL-style: the whole algorithm in ``SACTrainer.train``.

    buffer = ReplayBuffer(capacity=1_000_000)
    trainer = SACTrainer(model, env, buffer, config)
    trainer.train()

Twin Q networks (fused into one batched MLP) with Polyak-averaged targets, a tanh-squashed Gaussian actor,
automatic entropy temperature (target entropy = -action_dim), ``learning_starts`` steps of uniform random
actions, and an update-to-data ratio (``utd_ratio`` gradient updates per environment step). Truncated
episodes bootstrap (only true terminations set ``done``). The replay buffer is saved with every checkpoint
(``replay.npz``, the filled part only), so a resumed run continues with the same data.

The buffer stores raw observations; when ``normalize_observations`` is on they are normalised when sampled,
with the statistics of the moment (which keep changing, so the zoo settings for MuJoCo leave it off).

``mixed_precision: bf16`` runs the update's matmuls in bfloat16 (autocast) on a CPU too: on CPUs with AVX512-BF16
or AMX that about doubles the updates per second of the 256x256 MLPs; the losses, log-probs and Adam stay float32.
"""

from __future__ import annotations

import copy
import math
import time
from typing import Any

import torch

from ...config.training_config import RLConfig
from .buffers import ReplayBuffer
from .common import EpisodeLog, RLJob, RLRun, linear_lr, record_video, rl_task_of, setup_torch


class SACTrainer(RLJob):
    """SAC over a vector env; ``train()`` returns a summary dict (state, step, mean return, checkpoint)."""

    algorithm = "sac"

    def __init__(self, model: Any = None, env: Any = None, buffer: ReplayBuffer | None = None,
                 config: RLConfig | None = None, run_dir: Any = None, progress: bool = True, task: str | None = None):
        from .setup import build_actor_and_runner

        if isinstance(buffer, RLConfig) and config is None:  # SACTrainer(model, env, config)
            buffer, config = None, buffer
        self.config = config or RLConfig(algorithm="sac")
        self.device = setup_torch(self.config)
        self.policy, self.runner, self.task = build_actor_and_runner("sac", model, env, self.config, self.device, task)
        self.runner.update = False  # observations are normalised when sampled, not when collected
        self.buffer = buffer if buffer is not None else ReplayBuffer(self.config.buffer_size, seed=self.config.seed)
        self.run_dir, self.progress = run_dir, progress

    def eval_policy(self):
        return self.policy

    def train(self, total_timesteps: int | None = None) -> dict:
        c, dev, policy, runner, rb = self.config, self.device, self.policy, self.runner, self.buffer
        total = int(total_timesteps or c.total_timesteps)
        N, A = runner.num_envs, runner.action_dim
        q_target = copy.deepcopy(policy.q).requires_grad_(False)
        actor_opt = torch.optim.Adam(policy.actor.parameters(), lr=c.learning_rate, fused=True)
        q_opt = torch.optim.Adam(policy.q.parameters(), lr=c.learning_rate, fused=True)
        log_alpha = torch.tensor(math.log(c.init_temperature), device=dev, requires_grad=c.auto_entropy)
        alpha_opt = torch.optim.Adam([log_alpha], lr=c.learning_rate) if c.auto_entropy else None
        target_entropy = -float(A)
        # logging / checkpoint cadence: an "iteration" is steps_per_update vector steps
        iter_steps = max(1, c.steps_per_update) * N
        rl = RLRun(self.run_dir, c, total, self.progress)
        opts = {"actor": actor_opt, "q": q_opt, "q_target": q_target, "log_alpha": log_alpha}
        if alpha_opt is not None:
            opts["alpha"] = alpha_opt
        state, ckpt = rl.resume(policy, opts)
        global_step, n_updates, owed = (state["step"], state["updates"], state["owed"]) if state else (0, 0, 0.0)
        if ckpt is not None and (ckpt / "replay.npz").exists():
            self.buffer = rb = ReplayBuffer.load(ckpt / "replay.npz", capacity=c.buffer_size)
        episodes = EpisodeLog()
        rl.start(global_step, f"SAC on {self.task}: {total} steps of {N} envs, utd {c.utd_ratio}, buffer {len(rb)}")

        obs = runner.venv.reset(seed=c.seed + global_step)  # raw (N, S)
        alpha = log_alpha.detach().exp()
        losses: dict[str, float] = {}
        ckpt = None
        t_iter, n_iter_updates, next_log = time.perf_counter(), 0, (global_step // iter_steps + 1) * iter_steps

        def save() -> Any:
            return rl.save(global_step, policy, opts, {"updates": n_updates, "owed": owed},
                           extras=lambda d: rb.save(d / "replay.npz"))

        def normed(x: torch.Tensor) -> torch.Tensor:
            return policy.obs_rms(x)

        def amp() -> Any:  # bf16 matmuls in the update when asked (networks return float32 either way)
            return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=c.mixed_precision == "bf16")

        with rl.guard(save, lambda: global_step):
            while global_step < total and not rl.stop_requested:
                # ---- 1. act: uniform random before learning_starts, then the stochastic policy -------
                if global_step < c.learning_starts:
                    action = runner.venv.sample_actions()
                else:
                    with torch.inference_mode():
                        action = policy.act(normed(torch.from_numpy(obs).to(dev)))[0].cpu().numpy()
                next_obs, rew, term, trunc, final_obs, finished = runner.venv.step(action)
                real_next = next_obs.copy()
                for i, o in final_obs.items():  # the episode's own last observation, not the next one's first
                    real_next[i] = o
                rb.add(obs, action, rew, real_next, term)
                if c.normalize_observations:
                    policy.obs_rms.update(torch.from_numpy(obs))
                obs = next_obs
                global_step += N
                episodes.add(finished)
                if global_step < c.learning_starts:
                    continue
                if c.anneal_lr:
                    for o in (actor_opt, q_opt):
                        linear_lr(o, c.learning_rate, 1.0 - global_step / total)

                # ---- 2. update: utd_ratio gradient steps per environment step ------------------------
                owed += N * c.utd_ratio
                while owed >= 1:
                    owed -= 1
                    b = rb.sample(c.batch_size, dev)
                    o, o2 = normed(b["obs"]), normed(b["next_obs"])
                    with torch.no_grad(), amp():
                        a2, logp2 = policy.act(o2)
                        q_next = q_target(o2, a2).min(0).values - alpha * logp2  # (B,)
                        target = b["rewards"] + c.gamma * (1.0 - b["dones"]) * q_next
                    with amp():
                        q = policy.q(o, b["actions"])  # (2, B)
                    q_loss = 0.5 * ((q - target) ** 2).mean(1).sum()
                    q_opt.zero_grad(set_to_none=True)
                    q_loss.backward()
                    q_opt.step()
                    n_updates += 1
                    n_iter_updates += 1
                    if n_updates % c.policy_frequency == 0:
                        # the actor's loss back-propagates through the critics to the action only: freezing
                        # their weights skips the weight-gradient matmuls (a third of that backward pass)
                        policy.q.requires_grad_(False)
                        with amp():
                            a_pi, logp = policy.act(o)
                            q_pi = policy.q(o, a_pi).min(0).values
                        actor_loss = (alpha * logp - q_pi).mean()
                        actor_opt.zero_grad(set_to_none=True)
                        actor_loss.backward()
                        actor_opt.step()
                        policy.q.requires_grad_(True)
                        if alpha_opt is not None:
                            alpha_loss = -(log_alpha * (logp.detach() + target_entropy)).mean()
                            alpha_opt.zero_grad(set_to_none=True)
                            alpha_loss.backward()
                            alpha_opt.step()
                            alpha = log_alpha.detach().exp()
                        losses = {"losses/actor_loss": actor_loss.detach(), "losses/entropy": -logp.detach().mean()}
                    # Polyak averaging of the target critics, one fused op over all their tensors
                    torch._foreach_lerp_(list(q_target.parameters()), list(policy.q.parameters()), c.tau)

                # ---- 3. log, record, checkpoint every iteration --------------------------------------
                if global_step >= next_log:
                    next_log += iter_steps
                    if not torch.isfinite(q_loss):
                        from ..loop import TrainingError

                        raise TrainingError(f"the SAC critic loss became {q_loss.item()} at step {global_step}; "
                                            f"lower training.learning_rate")
                    dt = max(1e-9, time.perf_counter() - t_iter)
                    row = {"losses/qf_loss": q_loss.item(), "losses/qf_mean": q.detach().mean().item(),
                           "losses/alpha": float(alpha), "charts/temperature": float(alpha),
                           **{k: float(v) for k, v in losses.items()},
                           "charts/entropy": float(losses.get("losses/entropy", 0.0)),
                           "perf/steps_per_s": iter_steps / dt, "perf/grad_updates_per_s": n_iter_updates / dt,
                           "charts/updates": n_updates}
                    row.update(episodes.drain())
                    iteration = global_step // iter_steps
                    if c.video_every and iteration % c.video_every == 0:
                        row.update(record_video(policy, self.task, rl.run, global_step))
                    rl.log(global_step, row)
                    t_iter, n_iter_updates = time.perf_counter(), 0
                    if rl.run is not None and iteration % max(1, c.save_every) == 0:
                        ckpt = save()
            state_name, ckpt = rl.conclude(save, global_step)
        return {"state": state_name, "step": global_step, "updates": n_updates,
                "mean_return": episodes.mean_return(), "checkpoint": str(ckpt) if ckpt else None,
                "history": rl.history}

    @classmethod
    def for_job(cls, model: Any, cfg: Any, run: Any, progress: bool) -> "SACTrainer":
        """The trainer of a run config's job (``vla train rl-sac-halfcheetah``); RLJob.run_job runs it."""
        return cls(model, rl_task_of(cfg), None, cfg.training, run_dir=run, progress=progress)
