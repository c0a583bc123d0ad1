# nerflite: every target that needs Python depends on `setup`, so each works on a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SHARED ?= ../shared/data

.PHONY: setup test test-slow lint bench demo clean

setup: $(STAMP)

# torch: keep an importable torch (GPU boxes ship their own build); otherwise take the
# CPU wheel with `pip install torch==2.13.0` so no CUDA wheels land on a CPU machine.
$(STAMP): pyproject.toml
	@if $(PYTHON) -c "import torch" >/dev/null 2>&1; then \
	  echo "setup: torch $$($(PYTHON) -c 'import torch; print(torch.__version__)') already importable: keeping it"; \
	  $(PYTHON) -m venv --system-site-packages $(VENV); \
	else \
	  $(PYTHON) -m venv $(VENV) && $(BIN)/pip install -q torch==2.13.0; \
	fi
	$(BIN)/pip install -q -e ".[dev]"
	@touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -q

test-slow: setup
	NERFLITE_SHARED_DATA=$(SHARED) $(BIN)/python -m pytest -q -m "not gpu"

lint: setup
	$(BIN)/ruff check nerflite tests bench

bench: setup
	$(BIN)/python bench/run_all.py --data $(SHARED)

demo: setup
	$(BIN)/python -m nerflite.demo

clean:
	rm -rf $(VENV) .pytest_cache
