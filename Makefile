# Quick start:  make demo   (set up .venv, ghostify ResNet-50, profile the result)
#               make test   (set up .venv, lint (ruff), type-check (mypy), run the whole test suite)
# Both are idempotent and reuse an existing .venv.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.ghostcli-installed
OUT    ?= out

.PHONY: install demo test bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	mkdir -p $(OUT)
	$(VENV)/bin/ghostcli ghostify resnet50 -o $(OUT)/ghost_resnet50.safetensors --force
	$(VENV)/bin/ghostcli profile resnet50 $(OUT)/ghost_resnet50.safetensors --channels-last

test: install
	$(VENV)/bin/ruff check ghostcli tests benchmarks
	$(VENV)/bin/mypy
	$(PY) -m pytest -q

bench: install
	$(PY) -m pip install -q -e '.[dev,bench]'
	$(PY) benchmarks/bench_ghostify.py

clean:
	rm -rf $(OUT) .pytest_cache build *.egg-info
