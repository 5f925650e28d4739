"""Presets load and validate; bad configs fail with one line naming the field, value and choices."""

import pytest
import yaml

from vla_engine.config.base import ConfigError
from vla_engine.config.presets import get_training_config, list_presets, load_preset
from vla_engine.config.run_config import RunConfig
from vla_engine.config.training_config import FineTuningConfig, ILConfig, PretrainingConfig, RLConfig

SEED_PRESETS = ["finetune-quick", "finetune-standard", "finetune-full", "finetune-lora",
                "finetune-memory-efficient", "rl-ppo", "rl-sac", "rl-grpo", "il-bc", "il-gail",
                "il-dagger", "pretrain-align", "pretrain-instruct"]


def test_every_seed_preset_exists():
    assert set(SEED_PRESETS) <= set(list_presets())


@pytest.mark.parametrize("name", list_presets())
def test_preset_loads_validates_and_round_trips(name, tmp_path):
    cfg = load_preset(name)
    assert isinstance(cfg, RunConfig)
    path = tmp_path / "cfg.yaml"
    cfg.to_yaml(path)
    again = RunConfig.from_yaml(path)
    assert again.to_dict() == cfg.to_dict()


def test_get_training_config_types_and_seed_values():
    assert isinstance(get_training_config("finetune-quick"), FineTuningConfig)
    assert isinstance(get_training_config("rl-ppo"), RLConfig)
    assert isinstance(get_training_config("il-bc"), ILConfig)
    assert isinstance(get_training_config("pretrain-align"), PretrainingConfig)
    mem = get_training_config("finetune-memory-efficient")
    assert mem.batch_size == 2 and mem.batch_size * mem.gradient_accumulation_steps == 16
    assert mem.use_lora and mem.lora_r == 16 and mem.mixed_precision == "bf16"
    assert mem.freeze_vision and mem.freeze_vlm


def test_seed_config_call_shapes():
    c = RLConfig(algorithm="ppo", learning_rate=3e-4, gamma=0.99, gae_lambda=0.95, clip_range=0.2,
                 entropy_coef=0.01, num_envs=8, steps_per_update=2048)
    assert c.steps_per_update == 2048
    assert RLConfig(algorithm="grpo", group_size=4, kl_coef=0.1).group_size == 4
    assert ILConfig(beta_schedule="linear", num_iterations=10, rollouts_per_iteration=100).num_iterations == 10
    assert FineTuningConfig(learning_rate=1e-4, num_epochs=50, action_loss="mse",
                            gradient_accumulation_steps=4).gradient_accumulation_steps == 4
    p = PretrainingConfig(freeze_vision=True, freeze_llm=False, learning_rate=2e-5, batch_size=128, num_epochs=1)
    assert not p.freeze_llm


@pytest.mark.parametrize("overrides,pattern", [
    (["training.learning_rat=0.1"], r"^training: unknown field 'learning_rat'; allowed fields: .*learning_rate"),
    (["training.batch_size=abc"], r"^training.batch_size: 'abc' has the wrong type; expected an integer$"),
    (["training.learning_rate=-1"], r"^training.learning_rate: -1.0 is out of range; must be > 0$"),
    (["training.mixed_precision=fp8"], r"^training.mixed_precision: 'fp8' is not allowed; choose one of: no, bf16, fp16$"),
    (["model.action_head=banana"], r"^model.action_head: 'banana' is not a known action head; choose one of: .*mlp"),
    (["model.vision_encoder=vgg"], r"^model.vision_encoder: 'vgg' is not a known vision encoder; choose one of: .*cnn"),
    (["dataset.task=fly"], r"^dataset.task: 'fly' is not a known task; choose one of: .*reach.*push"),
    (["method=dance"], r"^run.method: 'dance' is not a known training method; choose one of: bc, sft"),
    (["bogus=1"], r"^run: unknown field 'bogus'"),
])
def test_bad_values_fail_naming_the_field(overrides, pattern):
    with pytest.raises(ConfigError, match=pattern) as e:
        load_preset("il-bc", overrides)
    assert "\n" not in str(e.value)


def test_unknown_preset_lists_choices():
    with pytest.raises(ConfigError, match=r"unknown preset 'nope'; choose one of: .*il-bc"):
        load_preset("nope")


def test_bad_yaml_file_is_one_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("training: {learning_rate: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_preset(str(p))
    p.write_text(yaml.safe_dump({"method": "bc", "training": {"type": "rl"}}))
    with pytest.raises(ConfigError, match=r"training.type: 'rl' does not fit method 'bc' \(it reads the 'il' training config\); remove training.type"):
        load_preset(str(p))


def test_planned_method_loads_but_running_says_what_is_missing(monkeypatch):
    """A method registered with a trainer module that is not in this version: its name validates, running
    it says which capability is missing and what is available."""
    from vla_engine.train import methods

    monkeypatch.setitem(methods.PLANNED_METHODS, "world-model", ("rl", "World-model reinforcement learning"))
    assert methods.method_config_type("world-model") == "rl" and "world-model" in methods.all_methods()
    with pytest.raises(methods.CapabilityMissing,
                       match=r"'world-model' \(World-model reinforcement learning\) is not built .*bc, sft"):
        methods.get_trainer("world-model")
    for name in methods.PLANNED_METHODS:  # every shipped preset of a planned method still loads
        assert methods.method_config_type(name)


def test_files_of_the_previous_layout_load_with_one_line_notes(caplog):
    """Each setting has one owner; a config that names a moved key loads, moved, and says where it went."""
    old = {"name": "old", "method": "sft",
           "model": {"action_dim": 2, "chunk_size": 4, "freeze_vision": True, "lora_r": 8, "lora_alpha": 16,
                     "lora_scope": "policy", "lora_target_modules": ["q_proj", "v_proj"],
                     "use_gradient_checkpointing": True},
           "dataset": {"chunk_size": 4, "n_obs_steps": 1, "num_workers": 2},
           "training": {"type": "finetune", "action_loss": "l1", "max_steps": 10}}
    with caplog.at_level("WARNING", logger="vla_engine.config"):
        cfg = RunConfig.from_dict(old)
    t = cfg.training
    assert t.freeze_vision and t.use_lora and (t.lora_r, t.lora_alpha, t.lora_scope) == (8, 16, "policy")
    assert t.lora_target_modules == ["q_proj", "v_proj"] and cfg.model.action_loss == "l1"
    assert cfg.model.chunk_size == 4 and t.gradient_checkpointing
    saved = cfg.to_dict()
    assert "type" not in saved["training"] and "action_loss" not in saved["training"]
    assert not {"chunk_size", "n_obs_steps", "num_workers"} & set(saved["dataset"])
    assert RunConfig.from_dict(saved).to_dict() == saved  # the new layout round-trips as it is
    said = "\n".join(r.getMessage() for r in caplog.records)
    for line in ("'model.freeze_vision' is now 'training.freeze_vision'", "'training.action_loss' is now "
                 "'model.action_loss'", "'dataset.chunk_size' is gone", "'training.type' is now 'method'"):
        assert line in said
    assert all("\n" not in r.getMessage() for r in caplog.records)


def test_method_keys_must_agree_with_the_method():
    with pytest.raises(ConfigError, match=r"training.algorithm: 'dagger' does not fit method 'bc'"):
        RunConfig.from_dict({"method": "bc", "training": {"algorithm": "dagger"}})
    assert RunConfig.from_dict({"method": "ppo", "training": {"algorithm": "ppo"}}).method == "ppo"


def test_replacing_the_training_config_keeps_its_class_and_says_nothing(caplog):
    """``cfg.replace(training=cfg.training.replace(...))`` is a new setting, not an old file to migrate."""
    from vla_engine.config import migrate

    migrate._seen.clear()
    cfg = load_preset("il-dagger")
    with caplog.at_level("WARNING", logger="vla_engine.config"):
        new = cfg.replace(training=cfg.training.replace(seed=7))
    assert (type(new.training), new.training.algorithm, new.training.seed) == (type(cfg.training), "dagger", 7)
    assert not caplog.records, [r.getMessage() for r in caplog.records]


def test_constructor_keywords_owned_elsewhere_are_kept_but_not_saved():
    """FineTuningConfig(action_loss=...) and RLConfig(algorithm=...) work as documented; the files carry
    them in their owners (model.action_loss, the run's method)."""
    ft = FineTuningConfig(action_loss="smooth_l1", learning_rate=1e-4)
    assert ft.action_loss == "smooth_l1" and ft.replace(max_steps=5).action_loss == "smooth_l1"
    assert "action_loss" not in ft.to_dict()
    rl = RLConfig(algorithm="grpo", group_size=4, kl_coef=0.1)
    assert rl.algorithm == "grpo" and "algorithm" not in rl.to_dict()
    with pytest.raises(ConfigError, match=r"training.action_loss: 'huber' is not allowed"):
        FineTuningConfig(action_loss="huber")


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_non_finite_numbers_are_refused(value):
    with pytest.raises(ConfigError, match=r"training.learning_rate: .* is not a finite number"):
        load_preset("il-bc", [f"training.learning_rate={value}"])


def test_every_training_field_has_help_and_vla_describe_shows_it(capsys):
    from vla_engine.cli import main
    from vla_engine.config.dataset_config import DatasetConfig
    from vla_engine.config.run_config import EvalConfig

    for cls in (ILConfig, FineTuningConfig, PretrainingConfig, RLConfig, DatasetConfig, EvalConfig):
        assert all(cls.field_help().values()), [k for k, v in cls.field_help().items() if not v]
    assert main(["describe", "il-bc", "--set", "training.max_steps=7"]) == 0
    out = capsys.readouterr().out
    assert "training.max_steps = 7  (default null)" in out
    assert "training.freeze_vlm = false\n      the vision encoder and the language model do not train" in out
    assert "model.chunk_size = 1" in out and "dataset.chunk_size" not in out
