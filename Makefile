# Two commands do everything on a fresh machine:  make demo   and   make test
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: setup demo test test-unit lint bench kafka-jars clean

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
