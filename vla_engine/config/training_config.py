"""Training configs: one flat dataclass per family of methods, over the shared loop's fields.

The public names: ``PretrainingConfig``, ``FineTuningConfig``, ``RLConfig``, ``ILConfig``. Saved on its
own a config carries a ``type`` key naming its class; inside a run config the run's ``method`` names it.

A few keywords are accepted by the constructors but are not settings of their own, because another
config owns them: ``action_loss`` (the model's ``model.action_loss``: a trainer given one sets it on the
model), ``algorithm`` of ``ILConfig`` / ``RLConfig`` (the trainer class, or a run's ``method``) and the
model parts named in ``PretrainingConfig`` (the model config's). They are kept as plain attributes.
"""

from __future__ import annotations

from dataclasses import InitVar, dataclass, field
from typing import Any, ClassVar, Literal

from .base import ConfigBase, ConfigError

ACTION_LOSSES = ("mse", "l1", "smooth_l1")


def _choice(section: str, name: str, value: Any, choices: tuple) -> Any:
    if value is not None and value not in choices:
        raise ConfigError(f"{section}.{name}: {value!r} is not allowed; choose one of: {', '.join(choices)}")
    return value


@dataclass
class TrainingConfig(ConfigBase):
    """Fields of the shared training loop (optimiser, schedule, checkpoints, logging)."""

    _section: ClassVar[str] = "training"
    type_name: ClassVar[str] = "base"

    learning_rate: float = 1e-4  # peak learning rate of AdamW (after warmup)
    weight_decay: float = 1e-4  # AdamW weight decay on matrices (biases and norms get none)
    adam_beta1: float = 0.9  # AdamW beta1 (momentum of the gradient mean)
    adam_beta2: float = 0.999  # AdamW beta2 (momentum of the squared gradient)
    warmup_steps: int = 100  # steps of linear warmup from 0 to learning_rate
    # decay after warmup, down to min_lr_ratio of the peak at the last step
    lr_scheduler: Literal["cosine", "constant", "linear"] = "cosine"
    min_lr_ratio: float = 0.0  # the learning rate at the last step, as a fraction of the peak (0 = decay to zero)
    batch_size: int = 64  # samples per micro-batch (the optimiser sees batch_size x gradient_accumulation_steps)
    num_epochs: int = 1  # passes over the data (when max_steps is not set)
    max_steps: int | None = None  # overrides num_epochs when set
    gradient_accumulation_steps: int = 1  # micro-batches summed before each optimiser step
    max_grad_norm: float = 1.0  # clip the gradient's global norm to this (0 = no clipping)
    # autocast on a GPU; SAC also runs its bf16 updates on a CPU (about 2x faster with AVX512-BF16 or AMX)
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    ema_decay: float = 0.0  # 0 = off; e.g. 0.999
    seed: int = 0  # seed of the weights, the data order and dropout
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    num_threads: int = 0  # torch CPU threads; 0 = torch's default
    num_workers: int = 0  # DataLoader worker processes (0 = load in the training process)
    save_every: int = 500  # save a checkpoint every this many optimiser steps (and at the end)
    keep_last: int = 3  # checkpoints kept in the run folder (older ones are deleted)
    log_every: int = 10  # log metrics every this many optimiser steps
    freeze_vision: bool = False  # the vision encoder does not train
    freeze_vlm: bool = False  # the vision encoder and the language model do not train (projector, head do)
    # start from this checkpoint's weights (a run id, a folder or shipped:<name>): supervised runs load them into
    # the run's model, which must have the checkpoint's architecture, and re-fit the normalisation to their own
    # data; RL runs warm-start the actor from it
    init_from: str | None = None
    # recompute the language model's activations in the backward pass (less memory, slower)
    gradient_checkpointing: bool = False
    # constructor-only: the model owns its loss (model.action_loss); a trainer given one sets it on the model
    action_loss: InitVar[str | None] = None

    # keywords kept across replace(): see the module docstring
    _init_only: ClassVar[tuple[str, ...]] = ("action_loss",)

    def __post_init__(self, action_loss: str | None = None) -> None:
        self.action_loss = _choice(self._section, "action_loss", action_loss, ACTION_LOSSES)
        super().__post_init__()

    def replace(self, **changes: Any):
        keep = {k: getattr(self, k) for k in self._init_only if k not in changes}
        init_only = {k: changes.pop(k) for k in list(changes) if k in self._init_only}
        new = super().replace(**changes)
        for k, v in {**keep, **init_only}.items():
            setattr(new, k, v)
        return new

    def validate(self) -> None:
        self._check_range("learning_rate", 0, lo_open=True)
        self._check_range("weight_decay", 0)
        self._check_range("adam_beta1", 0, 1)
        self._check_range("adam_beta2", 0, 1)
        self._check_range("warmup_steps", 0)
        self._check_range("min_lr_ratio", 0, 1)
        self._check_range("batch_size", 1)
        self._check_range("num_epochs", 1)
        self._check_range("max_steps", 1)
        self._check_range("gradient_accumulation_steps", 1)
        self._check_range("max_grad_norm", 0)
        self._check_range("ema_decay", 0, 1)
        self._check_range("num_threads", 0)
        self._check_range("num_workers", 0)
        self._check_range("save_every", 1)
        self._check_range("keep_last", 1)
        self._check_range("log_every", 1)
        if not (self.device in ("auto", "cpu", "cuda", "mps") or self.device.startswith("cuda:")):
            self._fail("device", "is not a device; choose one of: auto, cpu, cuda, cuda:N, mps")


@dataclass
class ILConfig(TrainingConfig):
    """Imitation learning: behaviour cloning, DAgger, GAIL."""

    type_name: ClassVar[str] = "il"

    # DAgger (max_steps / num_epochs are the training budget of each iteration)
    # the expert's share beta_i of iteration i: linear 1 -> 0, exponential beta^i, constant beta
    beta_schedule: Literal["linear", "exponential", "constant"] = "linear"
    beta: float = 0.5  # beta of the constant schedule; the base of the exponential one
    num_iterations: int = 10  # DAgger iterations (roll out, label by the expert, aggregate, retrain)
    rollouts_per_iteration: int = 20  # DAgger episodes rolled out per iteration
    retrain: Literal["finetune", "scratch"] = "finetune"  # each iteration goes on training, or starts afresh
    eval_episodes_per_iteration: int = 10  # learner-only episodes on held-out seeds after each iteration (0 = none)
    # DAgger: cut a data rollout after this many steps (empty: the task's limit); a stuck learner otherwise
    # fills the aggregate with near-repeats of the state it is stuck in
    rollout_max_steps: int | None = None
    # GAIL (the policy is trained by PPO with learning_rate; PPO's other settings are its defaults)
    discriminator_lr: float = 3e-4  # GAIL: Adam learning rate of the discriminator
    discriminator_steps: int = 5  # GAIL: discriminator epochs over each rollout (before its PPO update)
    expert_dataset: str | None = None  # GAIL: the expert demonstrations, a Minari dataset id or folder
    expert_episodes: int = 10  # GAIL: how many of its episodes (the first ones) the discriminator sees
    gp_weight: float = 10.0  # GAIL: weight of the discriminator's gradient penalty (0 = none)
    disc_hidden_sizes: list[int] = field(default_factory=lambda: [64, 64])  # GAIL: the discriminator MLP's widths
    total_timesteps: int = 200_000  # GAIL: environment steps in all
    num_envs: int = 8  # GAIL: environments stepped together
    steps_per_update: int = 256  # GAIL: steps per env in each rollout (one discriminator + one PPO update)
    # offline BC on a Minari dataset (method offline-bc; the data is dataset.minari_id)
    filter_top_percent: float | None = None  # offline-bc: only the episodes whose return is in the top N % (empty: all)
    return_threshold: float | None = None  # offline-bc: only the episodes whose return is at least this (empty: all)
    weighting: Literal["none", "return", "advantage"] = "none"  # offline-bc: weight steps by episode return or advantage
    temperature: float = 1.0  # offline-bc: temperature of the weights (lower: more weight on the best data)
    weighted_sampling: bool = True  # offline-bc: draw steps in proportion to their weights (false: weight the loss)
    policy_hidden_sizes: list[int] = field(default_factory=lambda: [256, 256])  # offline-bc: the state MLP's widths
    policy_activation: Literal["relu", "tanh"] = "relu"  # offline-bc: the state MLP's nonlinearity
    algorithm: InitVar[str | None] = None  # constructor-only: bc | dagger | gail | offline-bc (the run's method)

    _init_only: ClassVar[tuple[str, ...]] = ("action_loss", "algorithm")

    def __post_init__(self, action_loss: str | None = None, algorithm: str | None = None) -> None:
        self.algorithm = _choice(self._section, "algorithm", algorithm, ("bc", "dagger", "gail", "offline-bc"))
        super().__post_init__(action_loss)

    def validate(self) -> None:
        super().validate()
        self._check_range("num_iterations", 1)
        self._check_range("rollouts_per_iteration", 1)
        self._check_range("beta", 0, 1)
        self._check_range("eval_episodes_per_iteration", 0)
        self._check_range("rollout_max_steps", 1)
        self._check_range("discriminator_lr", 0, lo_open=True)
        self._check_range("discriminator_steps", 1)
        self._check_range("expert_episodes", 1)
        self._check_range("gp_weight", 0)
        self._check_range("total_timesteps", 1)
        self._check_range("num_envs", 1)
        self._check_range("steps_per_update", 1)
        self._check_range("filter_top_percent", 0, 100, lo_open=True)
        self._check_range("temperature", 0, lo_open=True)
        if self.weighting != "none" and (self.filter_top_percent is not None or self.return_threshold is not None):
            self._fail("weighting", "goes with all the data; set weighting: none to filter by return, or clear "
                                    "filter_top_percent / return_threshold to weight")
        if not self.policy_hidden_sizes or any(not isinstance(h, int) or h < 1 for h in self.policy_hidden_sizes):
            self._fail("policy_hidden_sizes", "must be a list of positive layer widths, e.g. [256, 256]")


@dataclass
class FineTuningConfig(TrainingConfig):
    """Supervised fine-tuning of a VLA on demonstrations, optionally with LoRA."""

    type_name: ClassVar[str] = "finetune"

    use_lora: bool = False  # add LoRA adapters (peft) and train them instead of the adapted layers' weights
    lora_r: int = 16  # adapter rank
    lora_alpha: int = 32  # adapter scaling numerator: the update is scaled by lora_alpha / lora_r
    lora_dropout: float = 0.05  # dropout on the adapters' input
    # names of the language model's linear layers that get adapters
    lora_target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    lora_scope: Literal["lm", "policy", "all"] = "lm"  # policy: projector, FiLM and head too; all: vision too

    def validate(self) -> None:
        super().validate()
        self._check_range("lora_r", 1)
        self._check_range("lora_alpha", 1)
        self._check_range("lora_dropout", 0, 1)


@dataclass
class PretrainingConfig(TrainingConfig):
    """VLM pretraining: stage 1 alignment (projector only) and stage 2 instruction tuning."""

    type_name: ClassVar[str] = "pretrain"

    freeze_vision: bool = True
    freeze_llm: bool = True  # the language model alone does not train (stage 1 trains the projector only)
    max_text_tokens: int = 64  # caption / instruction tokens kept per example
    # constructor-only: the model's parts (model.vision_encoder / llm / projector own them in a run config)
    vision_encoder: InitVar[str | None] = None
    llm_model: InitVar[str | None] = None
    projector_type: InitVar[str | None] = None

    _init_only: ClassVar[tuple[str, ...]] = ("action_loss", "vision_encoder", "llm_model", "projector_type")

    def __post_init__(self, action_loss: str | None = None, vision_encoder: str | None = None,
                      llm_model: str | None = None, projector_type: str | None = None) -> None:
        self.vision_encoder, self.llm_model, self.projector_type = vision_encoder, llm_model, projector_type
        super().__post_init__(action_loss)

    def validate(self) -> None:
        super().validate()
        self._check_range("max_text_tokens", 1)


@dataclass
class RLConfig(TrainingConfig):
    """Online reinforcement learning: PPO, SAC, GRPO."""

    type_name: ClassVar[str] = "rl"

    total_timesteps: int = 100_000  # environment steps in all
    gamma: float = 0.99  # discount factor
    gae_lambda: float = 0.95  # PPO: GAE lambda (bias-variance of the advantage)
    clip_range: float = 0.2  # PPO / GRPO: clip of the policy ratio
    entropy_coef: float = 0.01  # weight of the entropy bonus
    value_coef: float = 0.5  # PPO: weight of the value loss
    num_envs: int = 8  # environments stepped together
    steps_per_update: int = 2048  # PPO: environment steps per env between updates
    num_minibatches: int = 32  # PPO: minibatches per update epoch
    update_epochs: int = 10  # PPO: passes over each rollout
    # SAC
    buffer_size: int = 1_000_000
    tau: float = 0.005  # SAC: Polyak factor of the target networks
    learning_starts: int = 5_000  # SAC: environment steps of random actions before the first update
    auto_entropy: bool = True  # SAC: tune the entropy temperature to a target entropy
    # GRPO
    group_size: int = 4
    kl_coef: float = 0.1  # GRPO: weight of the KL to the reference policy
    # GRPO: what divides an episode's score minus its group's mean (TRL's scale_rewards): "group" its group's std
    # (DeepSeekMath), "batch" the std over the iteration (a group whose successes agree then keeps the tiny
    # advantages of its return differences instead of unit ones), "none" nothing (Dr. GRPO)
    scale_rewards: Literal["group", "batch", "none"] = "group"
    # GRPO: a seed whose group did not all succeed is drawn again in up to this many later iterations (at most
    # half of an iteration's groups; the rest are fresh seeds), so that more groups have mixed outcomes: a
    # group that all succeeds carries no signal (DAPO's dynamic sampling keeps only such groups). 0 = off
    replay_failed_seeds: int = 0
    # PPO details
    target_kl: float | None = None  # PPO: stop an update's epochs once the approximate KL passes this (empty: off)
    clip_value_loss: bool = False  # PPO: clip the value update to clip_range around the old values
    anneal_lr: bool = False  # PPO / SAC: decay the learning rate linearly to 0 over total_timesteps
    normalize_advantages: bool = True  # PPO: advantages to zero mean, unit std per minibatch
    normalize_observations: bool = True  # running mean/std of observations (saved with the policy)
    normalize_rewards: bool = True  # PPO: rewards scaled by the running std of the discounted return
    value_warmup_updates: int = 0  # PPO: first updates train the value head only (a warm-started actor stays put)
    # SAC details
    utd_ratio: float = 1.0  # SAC: gradient updates per environment step (update-to-data ratio)
    policy_frequency: int = 1  # SAC: actor (and temperature) updates every this many critic updates (TD3-style delay)
    init_temperature: float = 1.0  # SAC: entropy temperature at the start (learned when auto_entropy)
    # the policy network (state-based tasks; the VLA actor is the run's model)
    hidden_sizes: list[int] = field(default_factory=lambda: [64, 64])  # widths of the MLP's hidden layers
    activation: Literal["tanh", "relu"] = "tanh"  # the MLP's nonlinearity
    # PPO / GRPO: initial log standard deviation of the Gaussian policy (empty: 0 for an MLP policy, log 0.3 in
    # normalised action units for a VLA actor whose head has no std of its own)
    log_std_init: float | None = None
    ortho_init: bool = True  # orthogonal weight initialisation (CleanRL / SB3 default)
    # what the run rolls out in (training.init_from, in the base config, is what it starts from)
    env_image_size: int = 96  # VLA actor: camera image size of the rollouts (the model's image_size)
    max_episode_steps: int | None = None  # cut rollout episodes at this many steps (empty: the task's)
    video_every: int = 0  # record a rollout video every this many updates into videos/ (0: none)
    algorithm: InitVar[str | None] = None  # constructor-only: ppo | sac | grpo (the trainer, or the run's method)

    _init_only: ClassVar[tuple[str, ...]] = ("action_loss", "algorithm")

    def __post_init__(self, action_loss: str | None = None, algorithm: str | None = None) -> None:
        self.algorithm = _choice(self._section, "algorithm", algorithm, ("ppo", "sac", "grpo"))
        super().__post_init__(action_loss)

    def validate(self) -> None:
        super().validate()
        self._check_range("total_timesteps", 1)
        self._check_range("gamma", 0, 1)
        self._check_range("gae_lambda", 0, 1)
        self._check_range("clip_range", 0, lo_open=True)
        self._check_range("entropy_coef", 0)
        self._check_range("value_coef", 0)
        self._check_range("num_envs", 1)
        self._check_range("steps_per_update", 1)
        self._check_range("num_minibatches", 1)
        self._check_range("update_epochs", 1)
        self._check_range("buffer_size", 1)
        self._check_range("tau", 0, 1)
        self._check_range("learning_starts", 0)
        self._check_range("group_size", 2)
        self._check_range("kl_coef", 0)
        self._check_range("replay_failed_seeds", 0)
        self._check_range("target_kl", 0, lo_open=True)
        self._check_range("utd_ratio", 0, lo_open=True)
        self._check_range("value_warmup_updates", 0)
        self._check_range("policy_frequency", 1)
        self._check_range("init_temperature", 0, lo_open=True)
        self._check_range("env_image_size", 8)
        self._check_range("max_episode_steps", 1)
        self._check_range("video_every", 0)
        if not self.hidden_sizes or any(not isinstance(h, int) or h < 1 for h in self.hidden_sizes):
            self._fail("hidden_sizes", "must be a list of positive layer widths, e.g. [64, 64]")


TRAINING_CONFIG_TYPES: dict[str, type[TrainingConfig]] = {
    c.type_name: c for c in (TrainingConfig, ILConfig, FineTuningConfig, PretrainingConfig, RLConfig)
}


def training_config_from_dict(data: dict) -> TrainingConfig:
    """Build the training config named by ``data['type']`` (default: the base loop config)."""
    data = dict(data or {})
    type_name = data.pop("type", "base")
    if type_name not in TRAINING_CONFIG_TYPES:
        raise ConfigError(
            f"training.type: {type_name!r} is not allowed; choose one of: {', '.join(TRAINING_CONFIG_TYPES)}"
        )
    return TRAINING_CONFIG_TYPES[type_name].from_dict(data)
