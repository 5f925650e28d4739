# VLA Workbench set-up. Every target is idempotent: a second run takes seconds.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMPS := .stamps
# torch 2.14 (a CUDA build, run on the CPU) with its nvidia-* wheels, transformers, jax (minari), ...: 7.6 GB
# in the venv, 8.4 GB at the peak of the set-up (pip keeps its downloads until each install ends), measured
VENV_MIN_FREE_GB ?= 9
# EGL/Mesa for headless MuJoCo, FFmpeg libraries for video, Chromium for browser tests.
APT_PKGS := libegl1 libgl1 libegl-mesa0 libgles2 libgl1-mesa-dri libglx-mesa0 ffmpeg chromium chromium-driver fonts-dejavu-core
export MUJOCO_GL ?= egl
export PYOPENGL_PLATFORM ?= egl
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
# no wheel cache: the venv alone is ~9 GB and this disk is shared (CI once ran out of space in pip)
export PIP_NO_CACHE_DIR ?= 1

.PHONY: setup run test quickstart bench shipped-checkpoint clean apt

setup: apt $(STAMPS)/venv

apt:
	@missing=$$(for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing apt packages: $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  elif command -v sudo >/dev/null; then \
	    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else echo "warning: missing apt packages (install them as root): $$missing"; fi; \
	fi

$(STAMPS)/venv: pyproject.toml requirements-nodeps.txt
	@if [ ! -x $(PY) ]; then \
	  free_gb=$$(df -Pk . | awk 'NR==2 {print int($$4 / 1048576)}'); \
	  if [ "$$free_gb" -lt $(VENV_MIN_FREE_GB) ]; then \
	    echo "error: $$free_gb GB free on $$(df -P . | awk 'NR==2 {print $$6}'); the virtual environment needs about $(VENV_MIN_FREE_GB) GB (torch with its CUDA libraries): free some space and run make again" >&2; \
	    exit 1; \
	  fi; \
	  $(PYTHON) -m venv $(VENV); \
	fi
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "torch>=2.4,<2.15" "torchvision>=0.19,<0.30"
	$(PY) -m pip install -q -e ".[test,driving,pusht]"
	$(PY) -m pip install -q --no-deps -r requirements-nodeps.txt
	@mkdir -p $(STAMPS) && touch $@

# Opens the workbench in the browser on its offline defaults (http://127.0.0.1:7860).
run: setup
	$(PY) launch.py

# The command-line Quick Start: generate reach demos, train BC, evaluate, print the success rate.
quickstart: setup
	$(VENV)/bin/vla quickstart

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) benchmarks/run_all.py

# Re-trains the small checkpoint shipped in vla_engine/pretrained/ (Rollouts/Benchmark work on a fresh start).
shipped-checkpoint: setup
	$(PY) tools/ship_checkpoint.py

clean:
	rm -rf $(STAMPS) .pytest_cache
