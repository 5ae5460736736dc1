# The README's two commands: `make demo` and `make test`. Both set up .venv when it is missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Extras installed by `make setup`: `cpu` ONNX Runtime, `train` torch/timm, `ros` ROS 2 wheels,
# `nuscenes` the devkit (its reader tests run in CI), `test`.
# On a vehicle with a GPU: make setup EXTRAS=gpu,train,ros,test
# With a ROS 2 installation sourced ($ROS_DISTRO set), the venv sees the system's rclpy, message
# packages (--system-site-packages) and the ROS wheels are not installed.
ifdef ROS_DISTRO
EXTRAS ?= cpu,train,nuscenes,test
VENV_FLAGS ?= --system-site-packages
else
EXTRAS ?= cpu,train,ros,nuscenes,test
VENV_FLAGS ?=
endif
STAMP := $(VENV)/.setup-$(shell echo $(EXTRAS) | tr ',' '-')
FASTDDS_DEFAULT_PROFILES_FILE := $(CURDIR)/config/fastdds_shm.xml
export FASTDDS_DEFAULT_PROFILES_FILE
export RMW_IMPLEMENTATION ?= rmw_fastrtps_cpp
DEMO_OUT ?= demo_out
PYTEST_ARGS ?=

.PHONY: setup test demo clean help

help:
	@echo "make demo   - set up .venv if needed, then run the surround-depth demo into $(DEMO_OUT)/"
	@echo "make test   - set up .venv if needed, then run the whole test suite"
	@echo "make setup  - create .venv and install fsmde_ros with extras [$(EXTRAS)]"

setup: $(STAMP)

$(STAMP): setup.py constraints.txt
	@test -x $(PY) || { echo ">> creating $(VENV)"; $(PYTHON) -m venv $(VENV_FLAGS) $(VENV); }
	@echo ">> installing fsmde_ros[$(EXTRAS)] into $(VENV) (first time: a few minutes, ~6 GB for torch)"
	$(PY) -m pip install --upgrade --quiet pip setuptools wheel
	$(PY) -m pip install --progress-bar on -c constraints.txt -e ".[$(EXTRAS)]"
	$(PY) -m pip check
	@rm -f $(VENV)/.setup-*
	@touch $@

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

demo: setup
	$(VENV)/bin/fsmde demo --out $(DEMO_OUT)

clean:
	rm -rf build install log $(DEMO_OUT) .pytest_cache
