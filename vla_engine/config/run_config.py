"""The run config: one file that reproduces a run (model + dataset + training + evaluation)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from .base import ConfigBase, ConfigError
from .dataset_config import DatasetConfig
from .model_config import ModelConfig
from .training_config import TrainingConfig, training_config_from_dict

EVAL_SEED_START = 1_000_000  # evaluation seeds; training data uses seeds below this


@dataclass
class EvalConfig(ConfigBase):
    _section: ClassVar[str] = "eval"

    task: str | None = None  # default: the dataset's task
    episodes: int = 50
    seed_start: int = EVAL_SEED_START
    num_videos: int = 4
    max_episode_steps: int | None = None
    after_training: bool = True  # run the evaluation at the end of a training job

    def validate(self) -> None:
        self._check_range("episodes", 1)
        self._check_range("num_videos", 0)
        self._check_range("max_episode_steps", 1)
        self._check_range("seed_start", 0)
        if self.task is not None:
            from ..registry import TASKS
            from .. import envs  # noqa: F401  (registers the built-in tasks; light import)

            self._check_choice("task", TASKS)


@dataclass
class RunConfig(ConfigBase):
    _section: ClassVar[str] = "run"

    name: str = "run"
    method: str = "bc"
    description: str = ""
    model: ModelConfig = field(default_factory=ModelConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def validate(self) -> None:
        from ..train.methods import all_methods, method_config_type

        if self.method not in all_methods():
            self._fail("method", f"is not a known training method; choose one of: {', '.join(all_methods())}")
        want = method_config_type(self.method)
        if self.training.type_name != want:
            raise ConfigError(
                f"training.type: {self.training.type_name!r} does not fit method {self.method!r}; use type: {want}"
            )

    @classmethod
    def from_dict(cls, data: dict | None, prefix: str | None = None) -> "RunConfig":
        data = dict(data or {})
        training = data.get("training")
        if isinstance(training, dict):
            training = dict(training)
            if "type" not in training:
                from ..train.methods import method_config_type

                try:
                    training["type"] = method_config_type(data.get("method", "bc"))
                except RuntimeError:
                    pass  # the method check in validate() names the problem
            data["training"] = training_config_from_dict(training)
        return super().from_dict(data, prefix)
