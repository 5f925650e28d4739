"""PPO (proximal policy optimisation), CleanRL-style: the whole algorithm in ``PPOTrainer.train``.

    trainer = PPOTrainer(model, env, RLConfig(algorithm="ppo", learning_rate=3e-4, gamma=0.99, gae_lambda=0.95,
                                              clip_range=0.2, entropy_coef=0.01, num_envs=8, steps_per_update=2048))
    trainer.train(total_timesteps=1_000_000)

``env`` is a task name (``gym/Hopper-v5``, a gymnasium id, or a tabletop task such as ``push``) or a runner
built by ``vec_env.make_vec_env``. ``model`` is ``None`` (an MLP actor-critic is built from the config's
network fields), an ``MLPActorCritic``, or a ``VLAModel`` with a ``gaussian`` head (wrapped as a
``VLAActorCritic`` with a value head; image tasks). The same loop trains both.

Each update: roll out ``steps_per_update`` steps in each of ``num_envs`` envs; bootstrap truncated episodes
with the critic; GAE; then ``update_epochs`` passes of minibatch updates of the clipped surrogate, the
(optionally clipped) value loss and the entropy bonus, with advantage normalisation and gradient clipping,
stopping early when the approximate KL passes ``target_kl``. Observation and reward normalisation
statistics are part of the checkpoint.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from ...config.training_config import RLConfig
from .buffers import compute_gae
from .common import EpisodeLog, RLJob, RLRun, RewardScaler, flatten_parameters, linear_lr, record_video, setup_torch
from .policies import MLPActorCritic


class PPOTrainer(RLJob):
    """PPO over a vector env; ``train()`` returns a summary dict (state, step, mean return, checkpoint)."""

    algorithm = "ppo"

    def __init__(self, model: Any = None, env: Any = None, config: RLConfig | None = None, run_dir: Any = None,
                 progress: bool = True, task: str | None = None):
        from .setup import build_actor_and_runner

        self.config = config or RLConfig(algorithm="ppo")
        self.device = setup_torch(self.config)
        self.policy, self.runner, self.task = build_actor_and_runner("ppo", model, env, self.config, self.device, task)
        self.run_dir, self.progress = run_dir, progress

    def eval_policy(self):
        """What the evaluator runs: the MLP policy, or the VLA itself (its mean action)."""
        return getattr(self.policy, "vla", self.policy)

    def train(self, total_timesteps: int | None = None) -> dict:
        c, dev, policy, runner = self.config, self.device, self.policy, self.runner
        total = int(total_timesteps or c.total_timesteps)
        N, T = runner.num_envs, c.steps_per_update
        batch_size = N * T
        minibatch = max(1, batch_size // c.num_minibatches)
        num_updates = max(1, total // batch_size)
        params = [p for p in policy.parameters() if p.requires_grad]
        # an MLP's weights as views of one flat tensor: fused Adam and the gradient clip are then one kernel
        # each (the VLA actor keeps its tensors: frozen parts, LoRA adapters, mixed dtypes)
        flat = flatten_parameters(params) if isinstance(policy, MLPActorCritic) else None
        opt = torch.optim.Adam([flat] if flat is not None else params, lr=c.learning_rate, eps=1e-5, fused=True)
        reward_scaler = RewardScaler(N, c.gamma) if c.normalize_rewards else None
        rl = RLRun(self.run_dir, c, num_updates * batch_size, self.progress)
        state, _ = rl.resume(policy, {"optimizer": opt})
        update, global_step = (state["update"], state["step"]) if state else (0, 0)
        if state and reward_scaler is not None and state.get("reward_scaler"):
            reward_scaler.load_state_dict(state["reward_scaler"])
        episodes = EpisodeLog()
        rl.start(global_step, f"PPO on {self.task}: {num_updates} updates of {N} envs x {T} steps, "
                              f"{sum(p.numel() for p in params):,} trainable parameters")

        # rollout storage, preallocated numpy arrays (a per-step write there is far cheaper than a torch op);
        # observations are dicts of tensors (a state vector, or images + state + instruction ids)
        obs = runner.reset(seed=c.seed + 1000 * update)
        obs_buf = {k: np.zeros((T, N, *v.shape[1:]), dtype=v.cpu().numpy().dtype) for k, v in obs.items()}
        actions = np.zeros((T, N, runner.action_dim), np.float32)
        logprobs, rewards, dones, values = (np.zeros((T, N), np.float32) for _ in range(4))
        next_done = np.zeros(N, np.float32)
        ckpt, t_update = None, time.perf_counter()

        def save() -> Any:
            return rl.save(global_step, policy, {"optimizer": opt},
                           {"update": update, "reward_scaler": reward_scaler.state_dict() if reward_scaler else None})

        with rl.guard(save, lambda: global_step):
            while update < num_updates and not rl.stop_requested:
                if c.anneal_lr:
                    linear_lr(opt, c.learning_rate, 1.0 - update / num_updates)
                # ---- 1. roll out T steps in each env with the current policy -------------------------
                policy.eval()
                t0 = time.perf_counter()
                # MLP policies on CPU act through a numpy copy of their weights and the runner keeps the
                # observation statistics in numpy during the rollout (both: less per-step dispatch overhead)
                fast = hasattr(policy, "act_numpy") and dev.type == "cpu" and hasattr(runner, "begin")
                if fast:
                    policy.snapshot(seed=c.seed * 1_000_003 + update)
                    runner.begin()
                rollout_start_step = global_step
                with torch.inference_mode():
                    for t in range(T):
                        if rl.stop_requested:  # Stop mid-rollout (a VLA's rollout takes minutes): drop the rollout
                            break
                        for k, v in obs.items():
                            obs_buf[k][t] = v.cpu().numpy()
                        dones[t] = next_done
                        if fast:
                            a_np, logprobs[t], values[t] = policy.act_numpy(obs["state"].numpy())
                            action = torch.from_numpy(a_np)
                        else:
                            action, logp, value = policy.act(obs)
                            logprobs[t], values[t] = logp.cpu().numpy(), value.cpu().numpy()
                        actions[t] = action.cpu().numpy()
                        obs, r, term, trunc, final_obs, finished = runner.step(action)
                        global_step += N
                        if reward_scaler is not None:
                            r = reward_scaler(r, term | trunc)
                        # a time-limit truncation is not a failure: bootstrap with the critic's value of the
                        # episode's last observation (Stable-Baselines3 does the same)
                        for i, o in final_obs.items():
                            if trunc[i] and not term[i]:
                                r[i] += c.gamma * float(policy.value(o)[0])
                        rewards[t] = r
                        next_done = (term | trunc).astype(np.float32)
                        episodes.add(finished)
                    if fast:
                        runner.end()
                    if rl.stop_requested:  # the checkpoint is the last update's, at the step it was made
                        global_step = rollout_start_step
                        break
                    # ---- 2. advantages: GAE over the rollout ------------------------------------------
                    next_value = policy.value(obs).cpu()
                    advantages, returns = compute_gae(*(torch.from_numpy(x) for x in (rewards, values, dones)),
                                                      next_value, torch.from_numpy(next_done), c.gamma, c.gae_lambda)
                rollout_s = time.perf_counter() - t0

                # ---- 3. optimise the clipped surrogate for update_epochs over shuffled minibatches -----
                policy.train()
                b_obs = {k: torch.from_numpy(v).to(dev).reshape(batch_size, *v.shape[2:]) for k, v in obs_buf.items()}
                b_actions = torch.from_numpy(actions).to(dev).reshape(batch_size, -1)
                b_logprobs = torch.from_numpy(logprobs).to(dev).reshape(-1)
                b_values = torch.from_numpy(values).to(dev).reshape(-1)
                b_adv, b_returns = advantages.to(dev).reshape(-1), returns.to(dev).reshape(-1)
                clipfracs, approx_kl, n_grad = [], torch.zeros(()), 0
                t0 = time.perf_counter()
                for epoch in range(c.update_epochs):
                    order = torch.randperm(batch_size, device=dev)
                    for start in range(0, batch_size, minibatch):
                        mb = order[start:start + minibatch]
                        new_logp, entropy, new_value = policy.evaluate({k: v[mb] for k, v in b_obs.items()},
                                                                       b_actions[mb])
                        log_ratio = new_logp - b_logprobs[mb]
                        ratio = log_ratio.exp()
                        if start + minibatch >= batch_size:  # each epoch's last minibatch: the KL check's stats
                            with torch.no_grad():  # http://joschu.net/blog/kl-approx.html
                                approx_kl = ((ratio - 1) - log_ratio).mean()
                                clipfracs.append(((ratio - 1.0).abs() > c.clip_range).float().mean())
                        adv = b_adv[mb]
                        if c.normalize_advantages and len(mb) > 1:
                            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                        pg_loss = torch.max(-adv * ratio,
                                            -adv * ratio.clamp(1 - c.clip_range, 1 + c.clip_range)).mean()
                        if c.clip_value_loss:
                            v_clipped = b_values[mb] + (new_value - b_values[mb]).clamp(-c.clip_range, c.clip_range)
                            v_loss = 0.5 * torch.max((new_value - b_returns[mb]) ** 2,
                                                     (v_clipped - b_returns[mb]) ** 2).mean()
                        else:
                            v_loss = 0.5 * ((new_value - b_returns[mb]) ** 2).mean()
                        ent = entropy.mean()
                        # value warm-up: a warm-started actor does not move until the critic knows its returns
                        actor_on = float(update >= c.value_warmup_updates)
                        loss = actor_on * (pg_loss - c.entropy_coef * ent) + c.value_coef * v_loss
                        if flat is not None:
                            flat.grad.zero_()
                        else:
                            opt.zero_grad(set_to_none=True)
                        loss.backward()
                        if c.max_grad_norm > 0 and flat is not None:  # clip_grad_norm_'s rule, on one tensor
                            flat.grad.mul_(min(1.0, c.max_grad_norm / (float(flat.grad.norm()) + 1e-6)))
                        elif c.max_grad_norm > 0:
                            torch.nn.utils.clip_grad_norm_(params, c.max_grad_norm)
                        opt.step()
                        n_grad += 1
                    if c.target_kl is not None and approx_kl > c.target_kl:
                        break
                if not torch.isfinite(loss):
                    from ..loop import TrainingError

                    raise TrainingError(f"the PPO loss became {loss.item()} at step {global_step}; lower "
                                        f"training.learning_rate or turn on normalize_observations")
                update += 1
                update_s = time.perf_counter() - t0

                # ---- 4. log, record, checkpoint -------------------------------------------------------
                y_pred, y_true = b_values, b_returns
                var_y = y_true.var()
                row = {"losses/policy_loss": pg_loss.item(), "losses/value_loss": v_loss.item(),
                       "losses/entropy": ent.item(), "losses/approx_kl": approx_kl.item(),
                       "losses/clipfrac": float(torch.stack(clipfracs).mean()),
                       "losses/explained_variance": float(1 - (y_true - y_pred).var() / var_y) if var_y > 0 else 0.0,
                       "charts/entropy": ent.item(), "charts/learning_rate": opt.param_groups[0]["lr"],
                       "perf/steps_per_s": batch_size / max(1e-9, time.perf_counter() - t_update),
                       "perf/rollout_steps_per_s": batch_size / max(1e-9, rollout_s),
                       "perf/grad_updates_per_s": n_grad / max(1e-9, update_s), "charts/update": update}
                row.update(episodes.drain())
                t_update = time.perf_counter()
                if c.video_every and update % c.video_every == 0:
                    row.update(record_video(self.eval_policy(), self.task, rl.run, global_step))
                rl.log(global_step, row)
                if rl.run is not None and (update % max(1, c.save_every) == 0 or update == num_updates):
                    ckpt = save()
            state_name, ckpt = rl.conclude(save, global_step)
        return {"state": state_name, "step": global_step, "updates": update,
                "mean_return": episodes.mean_return(), "checkpoint": str(ckpt) if ckpt else None,
                "history": rl.history}


def evaluate_returns(policy: Any, task: str, episodes: int = 10, seed: int = 10_000) -> np.ndarray:
    """Deterministic episode returns of a state-based ``policy`` (the benchmark's final return)."""
    from .vec_env import make_vec_env

    venv = make_vec_env(task, 1)
    out = []
    for ep in range(episodes):
        o = venv.reset(seed=seed + ep)
        while True:
            a = policy.select_action(o).numpy()
            o, _, _, _, _, fin = venv.step(a)
            if fin:
                out.append(fin[0].episodic_return)
                break
    venv.close()
    return np.asarray(out)
