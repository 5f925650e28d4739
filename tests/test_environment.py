"""The set-up installs every ecosystem the design names, including the --no-deps ones."""

import importlib
import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", [
    "torch", "torchvision", "transformers", "peft", "diffusers", "accelerate", "safetensors", "gymnasium",
    "mujoco", "gradio", "plotly", "tensorboard", "datasets", "av", "minari",
    "h5py",                              # minari's HDF5 storage (once only a dependency of tensorflow's)
    "lerobot.datasets.lerobot_dataset",  # installed with --no-deps
    "nuscenes.nuscenes",                 # installed with --no-deps
])
def test_module_imports(module):
    importlib.import_module(module)


def test_rlds_stack_imports_in_its_own_process():
    # the optional `rlds` extra (pip install -e ".[rlds]", 1.5 GB, not in `make`'s set-up)
    pytest.importorskip("tensorflow_datasets")
    # TensorFlow is imported in a fresh process: next to MuJoCo's EGL context it must never be loaded
    code = "import tensorflow_datasets as tfds, tensorflow as tf; print(tf.__version__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]


def test_import_vla_engine_is_light():
    code = ("import sys, vla_engine, vla_engine.config, vla_engine.envs, vla_engine.models, vla_engine.data; "
            "heavy = [m for m in ('torch', 'mujoco', 'transformers', 'lerobot', 'gradio', 'tensorflow') if m in sys.modules]; "
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
