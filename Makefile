# ctrlic — everyday commands. `make help` lists them.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
DEMO_DIR ?= outputs/demo
DOCKER_IMAGE ?= ctrlic:latest
TEST_WORKERS ?= 2

.PHONY: help install browser demo test test-slow test-gpu gpu-check golden lint bench replicate docker clean

help:  ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)  ## create .venv and install ctrlic with its pinned dependencies

demo: install  ## tiny Cheng2020-attn, then CALICE α-adapters on it: RD curves from real bitstreams (~10 min)
	$(PY) run.py experiment=demo hydra.run.dir=$(DEMO_DIR)/cheng2020_attn
	$(PY) run.py experiment=demo_calice backbone.checkpoint=$(DEMO_DIR)/cheng2020_attn/checkpoints/last.ckpt \
		hydra.run.dir=$(DEMO_DIR)/calice_cheng2020_attn
	@echo "fixed-rate Cheng2020-attn (the anchor): $(DEMO_DIR)/cheng2020_attn/results.json  $(DEMO_DIR)/cheng2020_attn/rd.png"
	@echo "CALICE α sweep on it (one model):       $(DEMO_DIR)/calice_cheng2020_attn/results.json  $(DEMO_DIR)/calice_cheng2020_attn/rd.png"

browser:  ## headless Chromium for the report's browser test (Debian's package; needs root, skipped when present)
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
		|| echo "could not install chromium: tests/test_report.py's browser test will be skipped"

test: install browser  ## the default test suite (CPU, TEST_WORKERS processes, one thread each; the GPU suite is skipped, with the reason)
	$(PY) -m pytest -q -rs -n $(TEST_WORKERS) --dist loadfile

test-slow: install  ## the long tests: paper-size models
	$(PY) -m pytest -q -m slow

golden: install  ## regenerate tests/expected/ (golden bitstreams); only when a coder change is meant to move the bits
	$(PY) -m tests.golden --write

test-gpu: install  ## the GPU suite on one GPU (paper sizes) + the gloo DDP test; CTRLIC_TEST_DEVICE=cpu rehearses it
	$(PY) -m pytest -q -rs -m gpu
	$(PY) -m pytest -q -rs tests/test_ddp.py -k two_gloo_processes

gpu-check:  ## scripts/gpu_check.sh OUT=DIR: wheels, GPU suite, GPU benchmarks, one JSON (no .venv needed)
	scripts/gpu_check.sh $(or $(OUT),outputs/gpu_check)

lint: install  ## ruff
	$(VENV)/bin/ruff check ctrlic tests benchmarks run.py

bench: install  ## CPU benchmarks (<20 min on 2 cores), JSON under benchmarks/results; BENCH_ARGS=--gpu adds GPU figures
	$(PY) -m benchmarks.run_all $(BENCH_ARGS)

replicate: install  ## every benchmarks/replicate_*.py (long); REPLICATE_ARGS="--only calice" for a subset
	$(PY) -m benchmarks.run_replications $(REPLICATE_ARGS)

docker:  ## build the CUDA training image from docker/Dockerfile, tagged $(DOCKER_IMAGE)
	DOCKER_BUILDKIT=1 docker build -f docker/Dockerfile -t $(DOCKER_IMAGE) .

clean:  ## remove run outputs (not the venv)
	rm -rf outputs multirun
