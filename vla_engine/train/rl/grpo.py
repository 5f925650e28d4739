"""GRPO (group relative policy optimisation) for a VLA: "optimise a VLA like an LLM".

    trainer = GRPOTrainer(model, env, RLConfig(algorithm="grpo", group_size=4, kl_coef=0.1))
    trainer.train()

Each iteration rolls out ``num_envs`` episodes at once in ``num_envs / group_size`` groups: the episodes of a
group start from the same seed (same layout, same instruction) and differ only by the sampled actions.
An episode's score is ``success + 0.01 * return`` (success first; the dense return breaks ties, e.g. faster
or closer pushes); its advantage is the score relative to its group, ``(R - mean_group) / (std_group + eps)`` (no critic);
``scale_rewards: batch`` divides by the iteration's std instead, so that a group whose episodes all succeeded
does not turn the small differences of their returns into unit advantages. Every step of an episode shares its advantage; the loss is PPO's clipped ratio on those steps
plus ``kl_coef`` times the KL to a frozen reference policy (the checkpoint the run starts from: the BC
policy), with the unbiased estimator ``exp(ref - new) - (ref - new) - 1`` (zero when the two agree).
No value function is trained. Group seeds are training seeds (below the evaluation seeds, 1,000,000+); with
``replay_failed_seeds: N`` a seed whose group did not all succeed comes back in up to N later iterations (up to
half of each iteration's groups), so fewer groups are all-success ones with zero advantage.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import numpy as np
import torch

from ...config.base import ConfigError
from ...config.training_config import RLConfig
from .common import RLJob, RLRun, linear_lr, record_video, setup_torch

SCORE_RETURN_COEF = 0.01  # weight of the dense return next to success in an episode's score


def group_advantages(scores: torch.Tensor, group_size: int, eps: float = 1e-6,
                     scale: str = "group") -> torch.Tensor:
    """Scores (G * K,) laid out group by group -> advantages relative to each group's mean, divided by the
    group's std (``scale="group"``), the whole batch's std (``"batch"``) or nothing (``"none"``)."""
    g = scores.reshape(-1, group_size)  # (groups, K)
    adv = g - g.mean(1, keepdim=True)  # (groups, K)
    if scale == "group":
        adv = adv / (g.std(1, keepdim=True, unbiased=False) + eps)
    elif scale == "batch":
        adv = adv / (scores.std(unbiased=False) + eps)
    return adv.reshape(-1)


def kl_to_reference(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-sample KL(new || ref) estimate ``exp(ref - new) - (ref - new) - 1`` (>= 0, zero when equal)."""
    d = ref_logp - logp
    return d.exp() - d - 1


class GRPOTrainer(RLJob):
    """GRPO over a VLA actor on an image task; ``train()`` returns a summary with the success curve."""

    algorithm = "grpo"

    def __init__(self, model: Any = None, env: Any = None, config: RLConfig | None = None, run_dir: Any = None,
                 progress: bool = True, task: str | None = None):
        from .setup import build_actor_and_runner

        self.config = c = config or RLConfig(algorithm="grpo")
        if c.num_envs % c.group_size:
            raise ConfigError(f"training.num_envs: {c.num_envs} episodes per iteration do not split into groups of "
                              f"group_size {c.group_size}; make num_envs a multiple of it (e.g. {2 * c.group_size})")
        self.device = setup_torch(c)
        self.policy, self.runner, self.task = build_actor_and_runner("grpo", model, env, c, self.device, task)
        # the reference: a frozen copy of the policy the run starts from (the BC checkpoint)
        self.reference = copy.deepcopy(self.policy).requires_grad_(False).eval()
        if hasattr(self.policy, "texts"):
            self.reference.texts = self.policy.texts  # one table of instruction strings for both
        self.run_dir, self.progress = run_dir, progress
        # replay_failed_seeds: (seed, tries so far) waiting to be drawn again; the latest iteration's replayed
        # seeds and their tries; the next fresh seed
        self.seed_queue: list[tuple[int, int]] = []
        self.drawn: dict[int, int] = {}
        self.fresh_seed: int | None = None

    def eval_policy(self):
        return getattr(self.policy, "vla", self.policy)

    # -- one iteration's experience ------------------------------------------------------------------
    def group_seeds(self, iteration: int) -> list[int]:
        """One training seed per group: replayed seeds whose group failed somewhere first (up to half the
        groups), then fresh ones. Fresh seeds run ``seed * 100_003 + 0, 1, 2, ...`` over the whole run."""
        groups = self.runner.num_envs // self.config.group_size
        replay = self.seed_queue[: groups // 2] if self.config.replay_failed_seeds else []
        self.seed_queue = self.seed_queue[len(replay):]
        self.drawn = dict(replay)
        if self.fresh_seed is None:  # no replay state: consecutive fresh seeds as iteration * groups + g
            self.fresh_seed = iteration * groups
        fresh = [self.config.seed * 100_003 + self.fresh_seed + g for g in range(groups - len(replay))]
        self.fresh_seed += len(fresh)
        return [seed for seed, _ in replay] + fresh

    def requeue(self, seeds: list[int], success: np.ndarray) -> None:
        """Queue again the seeds whose group did not all succeed (each at most ``replay_failed_seeds`` times)."""
        if not self.config.replay_failed_seeds:
            return
        k = self.config.group_size
        for g, seed in enumerate(seeds[::k]):
            tries = self.drawn.get(seed, 0) + 1
            if not success[g * k:(g + 1) * k].all() and tries <= self.config.replay_failed_seeds:
                self.seed_queue.append((seed, tries))

    @torch.no_grad()
    def rollout_groups(self, iteration: int, stop: Any = lambda: False) -> dict[str, Any] | None:
        """``num_envs`` episodes, group_size per seed, stepped in lockstep; returns the steps and scores, or None
        when ``stop()`` turns true mid-rollout (Stop pressed: the unfinished groups are dropped)."""
        c, runner, policy = self.config, self.runner, self.policy
        n, k = runner.num_envs, c.group_size
        seeds = [s for s in self.group_seeds(iteration) for _ in range(k)]
        for i in range(n):
            runner.reset_env(i, seed=seeds[i])
        steps: list[tuple[dict, torch.Tensor, torch.Tensor, np.ndarray]] = []  # (obs, action, logp, env ids)
        alive = np.ones(n, bool)
        ret, length, success = np.zeros(n), np.zeros(n, np.int64), np.zeros(n, bool)
        policy.eval()
        while alive.any():
            if stop():
                return None
            ids = np.flatnonzero(alive)
            obs = {key: v[ids] for key, v in runner.observe().items()}
            action, logp, _ = policy.act(obs)
            raw = policy.env_action(action)
            steps.append((obs, action, logp, ids))
            for j, i in enumerate(ids):
                o, r, term, trunc, info = runner.envs[i].step(raw[j])
                runner._obs[i] = o
                ret[i] += r
                length[i] += 1
                success[i] |= bool(info.get("is_success", False))
                if term or trunc:
                    alive[i] = False
        scores = torch.as_tensor(success + SCORE_RETURN_COEF * ret, dtype=torch.float32)
        return {"steps": steps, "scores": scores, "success": success, "return": ret, "length": length,
                "seeds": seeds}

    def train(self, total_timesteps: int | None = None) -> dict:
        c, dev, policy, reference = self.config, self.device, self.policy, self.reference
        total = int(total_timesteps or c.total_timesteps)
        params = [p for p in policy.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=c.learning_rate, eps=1e-5)
        rl = RLRun(self.run_dir, c, total, self.progress)
        state, _ = rl.resume(policy, {"optimizer": opt})
        iteration, global_step = (state["iteration"], state["step"]) if state else (0, 0)
        if state and "fresh_seed" in state:  # the seed replay's queue, as the checkpoint left it
            self.fresh_seed = state["fresh_seed"]
            self.seed_queue = [(int(s), int(t)) for s, t in state.get("seed_queue", [])]
        rl.start(global_step, f"GRPO on {self.task}: {self.runner.num_envs // c.group_size} groups of "
                              f"{c.group_size} per iteration, {sum(p.numel() for p in params):,} trainable parameters")
        ckpt, curve = None, []

        def save() -> Any:
            return rl.save(global_step, policy, {"optimizer": opt}, {
                "iteration": iteration, "fresh_seed": self.fresh_seed, "seed_queue": self.seed_queue})

        with rl.guard(save, lambda: global_step):
            while global_step < total and not rl.stop_requested:
                if c.anneal_lr:
                    linear_lr(opt, c.learning_rate, 1.0 - global_step / total)
                t0 = time.perf_counter()
                exp = self.rollout_groups(iteration, stop=lambda: rl.stop_requested)
                if exp is None:  # stopped mid-rollout: the checkpoint is the last iteration's
                    break
                self.requeue(exp["seeds"], exp["success"])
                adv_ep = group_advantages(exp["scores"], c.group_size, scale=c.scale_rewards).to(dev)  # (n,)
                # flatten the steps: observations, actions, old and reference log-probs, advantages
                obs = {key: torch.cat([s[0][key] for s in exp["steps"]]).to(dev) for key in exp["steps"][0][0]}
                actions = torch.cat([s[1] for s in exp["steps"]])
                old_logp = torch.cat([s[2] for s in exp["steps"]])
                adv = torch.cat([adv_ep[torch.as_tensor(s[3], device=dev)] for s in exp["steps"]])
                n_steps = len(actions)
                with torch.no_grad():
                    ref_logp = torch.cat([reference.evaluate({k: v[i:i + 256] for k, v in obs.items()},
                                                             actions[i:i + 256])[0] for i in range(0, n_steps, 256)])
                rollout_s = time.perf_counter() - t0

                # clipped-ratio updates with the KL to the reference, over minibatches of steps
                policy.train()
                minibatch = max(1, n_steps // c.num_minibatches)
                kls, pg, ents = [], [], []
                for _ in range(c.update_epochs):
                    order = torch.randperm(n_steps, device=dev)
                    for start in range(0, n_steps, minibatch):
                        mb = order[start:start + minibatch]
                        logp, entropy, _ = policy.evaluate({k: v[mb] for k, v in obs.items()}, actions[mb])
                        ratio = (logp - old_logp[mb]).exp()
                        pg_loss = torch.max(-adv[mb] * ratio,
                                            -adv[mb] * ratio.clamp(1 - c.clip_range, 1 + c.clip_range)).mean()
                        kl = kl_to_reference(logp, ref_logp[mb]).mean()
                        loss = pg_loss + c.kl_coef * kl - c.entropy_coef * entropy.mean()
                        opt.zero_grad(set_to_none=True)
                        loss.backward()
                        if c.max_grad_norm > 0:
                            torch.nn.utils.clip_grad_norm_(params, c.max_grad_norm)
                        opt.step()
                        kls.append(kl.item())
                        pg.append(pg_loss.item())
                        ents.append(entropy.mean().item())
                iteration += 1
                global_step += n_steps
                success = float(exp["success"].mean())
                curve.append(success)
                row = {"charts/success_rate": success, "charts/episodic_return": float(exp["return"].mean()),
                       "charts/episodic_length": float(exp["length"].mean()), "charts/iteration": iteration,
                       "grpo/score_mean": float(exp["scores"].mean()),
                       "grpo/replayed_groups": float(len(self.drawn)),
                       "grpo/groups_with_signal": float((exp["scores"].reshape(-1, c.group_size).std(1) > 0)
                                                        .float().mean()),
                       "losses/policy_loss": float(np.mean(pg)), "losses/kl": float(np.mean(kls)),
                       "losses/kl_first": kls[0], "charts/entropy": float(np.mean(ents)),
                       "perf/steps_per_s": n_steps / max(1e-9, time.perf_counter() - t0),
                       "perf/rollout_steps_per_s": n_steps / max(1e-9, rollout_s)}
                if c.video_every and iteration % c.video_every == 0:
                    row.update(record_video(self.eval_policy(), self.task, rl.run, global_step))
                rl.log(global_step, row)
                if rl.run is not None and iteration % max(1, c.save_every) == 0:
                    ckpt = save()
            state_name, ckpt = rl.conclude(save, global_step)
        return {"state": state_name, "step": global_step, "iterations": iteration, "success_curve": curve,
                "checkpoint": str(ckpt) if ckpt else None, "history": rl.history}

