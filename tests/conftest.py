import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("USE_TF", "0")  # transformers must not pull TensorFlow in next to MuJoCo

ROOT = Path(__file__).resolve().parent.parent

import pytest  # noqa: E402

import vla_engine.envs  # noqa: E402,F401  (sets MUJOCO_GL for headless rendering before anything imports mujoco)


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    d = ROOT / "test-artifacts"
    d.mkdir(exist_ok=True)
    return d


@pytest.fixture(autouse=True)
def _fresh_migration_notes(monkeypatch):
    """A migration note is said once per process; each test that looks for one starts afresh."""
    from vla_engine.config import migrate
    monkeypatch.setattr(migrate, "_seen", set())
