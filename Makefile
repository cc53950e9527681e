# imdb-sentiment developer tasks. GNU make; everything runs inside $(VENV).
#
#   make install     create .venv and install the package with its dev extras
#   make test        run the offline test suite with coverage (what CI runs)
#   make lint        the pre-commit hooks on every file: ruff (style and complexity), ruff format
#                    (layout), mypy, the import-linter layer contract, hadolint, file hygiene
#   make docs        build the documentation site into site/ (mkdocs --strict)
#   make demo        download IMDB, fine-tune MiniLM on 2000 reviews, evaluate, predict
#   make container   build the Docker image with podman (no registry needed), train and serve a
#                    tiny run in it, check /predict (root; needs podman, runc and debootstrap)
#
# torch is installed before the package so that pip keeps the build you chose instead of
# pulling the default (multi-GB CUDA) wheel. Override TORCH_SPEC for other hardware; it is
# passed to pip unquoted, so it may carry options, e.g.
#   make install TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu124"
# (quote a version range inside it: TORCH_SPEC="'torch>=2.4' --index-url ...").

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=

# demo knobs
IMDB_SOURCE ?= stanfordnlp/imdb
DEMO_SAMPLES ?= 2000
DEMO_RUN ?= demo
# WANDB=1 make demo reports the demo run to Weights & Biases
REPORT_TO ?= $(if $(filter 1,$(WANDB)),wandb,none)

BIN := $(VENV)/bin
VENV_PY := $(BIN)/python
STAMP := $(VENV)/.installed
CLI := $(BIN)/imdb-sentiment

# Tests never touch the network, never log to a W&B server, and measure coverage in every
# Python process they start (CLI subprocesses, distributed workers): the .pth hook written by
# `install` starts coverage wherever COVERAGE_PROCESS_START is set, and the absolute
# COVERAGE_FILE makes those processes write their data next to ours whatever their working
# directory, so pytest-cov can combine it.
TEST_ENV := \
	HF_HUB_OFFLINE=1 \
	HF_DATASETS_OFFLINE=1 \
	TRANSFORMERS_OFFLINE=1 \
	WANDB_MODE=offline \
	WANDB_SILENT=true \
	TOKENIZERS_PARALLELISM=false \
	COVERAGE_PROCESS_START=$(CURDIR)/pyproject.toml \
	COVERAGE_FILE=$(CURDIR)/.coverage

COVERAGE_PTH := import os; os.environ.get("COVERAGE_PROCESS_START") and __import__("coverage").process_startup()

.DEFAULT_GOAL := help
.PHONY: help install test lint docs demo container clean

help: ## list targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(firstword $(MAKEFILE_LIST)) \
		| awk 'BEGIN {FS = ":.*## "}; {printf "  %-10s %s\n", $$1, $$2}'

$(VENV_PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(VENV_PY)
	$(VENV_PY) -m pip install --upgrade pip
	$(VENV_PY) -m pip install $(TORCH_SPEC)
	$(VENV_PY) -m pip install -e ".[dev]"
	@site=$$($(VENV_PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') \
		&& printf '%s\n' '$(COVERAGE_PTH)' > "$$site/imdb_sentiment_coverage.pth"
	@touch $@

install: $(STAMP) ## create .venv and install the package, torch first (TORCH_SPEC)

test: install ## run the test suite with coverage (PYTEST_ARGS="-k foo" to narrow)
	@rm -f .coverage .coverage.*
	$(TEST_ENV) $(VENV_PY) -m pytest --cov --cov-report=term $(PYTEST_ARGS)

# The hooks (.pre-commit-config.yaml) are repo: local and run this environment's tools: no
# network. They see the files git tracks; `git add` a new file to have it checked.
lint: install ## pre-commit hooks on all files: ruff, ruff format, mypy, import layers, hadolint, hygiene
	VIRTUAL_ENV=$(abspath $(VENV)) $(BIN)/pre-commit run --all-files --show-diff-on-failure

# The CLI and configuration references and the README pages are generated at build time
# (scripts/docs_hooks.py); `python scripts/gen_cli_reference.py` prints the CLI reference alone.
docs: install ## build the documentation site into site/ (--strict: broken links fail)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# The demo reuses prepared data; --force only replaces a data folder left without a manifest.
# It sets the budget only (reviews, length, epochs): learning rate and batch size come from the
# MiniLM recipe (imdb_sentiment/recipes/minilm.yaml, its cpu: section on a CPU).
demo: install ## download IMDB, fine-tune MiniLM on DEMO_SAMPLES reviews, evaluate, predict
	[ -f data/imdb/manifest.json ] || \
		$(CLI) download --source $(IMDB_SOURCE) --output data/imdb --force
	$(CLI) train --model minilm --max-train-samples $(DEMO_SAMPLES) --max-length 128 \
		--epochs 1 --run-name $(DEMO_RUN) --overwrite --report-to $(REPORT_TO)
	$(CLI) eval runs/$(DEMO_RUN) --split validation
	$(CLI) predict "A wonderful, moving film with a brilliant cast." \
		"Two hours of my life I will never get back."

# The base image is Debian bookworm made with debootstrap; the build uses this machine's pip
# settings and wheel folders (docs/SERVING.md, "Without an image registry").
container: install ## build the image (podman), train and serve a tiny run in it, check /predict
	scripts/container_smoke.sh

clean: ## remove build artefacts and caches (keeps .venv, data/ and runs/)
	rm -rf build dist site *.egg-info .pytest_cache .mypy_cache .ruff_cache htmlcov \
		.coverage .coverage.* coverage.xml
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -print -exec rm -rf {} +
