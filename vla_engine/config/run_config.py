"""The run config: one file that reproduces a run (model + dataset + training + evaluation)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from .base import ConfigBase, ConfigError
from .dataset_config import DatasetConfig
from .migrate import migrate_run_dict, moved_note, note
from .model_config import ModelConfig
from .training_config import TrainingConfig, training_config_from_dict

EVAL_SEED_START = 1_000_000  # evaluation seeds; training data uses seeds below this
RUN_CONFIG_VERSION = 2  # 2: each setting has one owner (config/migrate.py moves the keys of version 1)


@dataclass
class EvalConfig(ConfigBase):
    _section: ClassVar[str] = "eval"

    task: str | None = None  # default: the dataset's task
    episodes: int = 50  # held-out episodes to evaluate
    seed_start: int = EVAL_SEED_START  # first evaluation seed (training data uses the seeds below 1,000,000)
    num_videos: int = 4  # episodes recorded as mp4 (the first ones)
    max_episode_steps: int | None = None  # step limit per episode (empty: the task's)
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


MAX_NAME_CHARS = 64  # a run name longer than this is refused (it names the run folder and table rows)


@dataclass
class RunConfig(ConfigBase):
    """A whole run: the ``method`` (which trainer, and so which training config class), the model, the data,
    the training and the evaluation after it. ``config.yaml`` of a train run; presets are RunConfigs."""

    _section: ClassVar[str] = "run"

    name: str = "run"  # the run's name (the run folder is named from it)
    method: str = "bc"  # the training method: names the trainer and its training config (vla presets lists them)
    description: str = ""  # one line shown next to the preset
    model: ModelConfig = field(default_factory=ModelConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    version: int = RUN_CONFIG_VERSION  # the layout of this file (older layouts load, moved)

    def validate(self) -> None:
        from ..train.methods import all_methods, method_config_type

        if not isinstance(self.name, str) or not self.name.strip() or len(self.name) > MAX_NAME_CHARS:
            length = len(self.name) if isinstance(self.name, str) else 0
            raise ConfigError(f"name: a run name must be 1 to {MAX_NAME_CHARS} characters (this one has {length}); "
                              f"choose a shorter name")
        if self.method not in all_methods():
            self._fail("method", f"is not a known training method; choose one of: {', '.join(all_methods())}")
        want = method_config_type(self.method)
        if self.training.type_name != want:
            raise ConfigError(
                f"training: a {type(self.training).__name__} does not fit method {self.method!r}, which reads the "
                f"'{want}' training config"
            )

    @classmethod
    def from_dict(cls, data: dict | None, prefix: str | None = None) -> "RunConfig":
        """A run config from a dict; keys of earlier versions move to their owners with a one-line note."""
        data = migrate_run_dict(data or {})
        method = data.get("method", "bc")
        training = data.get("training")
        if isinstance(training, dict):
            _check_method_keys(training, method)
            from ..train.methods import method_config_type

            try:
                training["type"] = method_config_type(method)
            except RuntimeError:
                pass  # the method check in validate() names the problem
            if training.get("type") in ("il", "rl"):
                training["algorithm"] = method  # ILConfig / RLConfig(algorithm=...) say which one, as constructed
            data["training"] = training_config_from_dict(training)
        data["version"] = RUN_CONFIG_VERSION
        return super().from_dict(data, prefix)

    def to_dict(self) -> dict:
        out = super().to_dict()
        out["training"].pop("type", None)  # the method names the training config's class
        return out

    def replace(self, **changes: Any) -> "RunConfig":
        training = changes.get("training")
        if isinstance(training, TrainingConfig):  # its class is the method's: not an old file's training.type
            changes["training"] = {k: v for k, v in training.to_dict().items() if k != "type"}
        return super().replace(**changes)


def _check_method_keys(training: dict, method: str) -> None:
    """``training.type`` / ``algorithm`` / ``stage`` of earlier versions: the run's ``method`` says it now."""
    from ..train.methods import method_config_type

    for key in ("type", "algorithm", "stage"):
        if key not in training:
            continue
        value = training.pop(key)
        try:
            want = method_config_type(method) if key == "type" else method
        except RuntimeError:
            continue  # an unknown method: validate() names it
        if value != want:
            fix = (f"(it reads the '{want}' training config); remove training.type: the run's method names it"
                   if key == "type" else f"; remove training.{key} (the run's method names the trainer) or set "
                                         f"method: {value}")
            raise ConfigError(f"training.{key}: {value!r} does not fit method {method!r} {fix}".replace(" ;", ";"))
        note(moved_note(f"training.{key}", "method"))
