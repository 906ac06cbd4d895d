# Two commands for a fresh machine: `make demo` and `make test`; both install what they need first.
PYTHON ?= python3
VENV ?= .venv
# The CPU-capable torch pair that lies on this machine's disk; on a GPU cluster pass your own build,
# e.g. make setup TORCH_SPEC="torch==2.14.1 torchvision==0.29.1 --index-url <your CUDA index>".
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
EXTRAS ?= all,dev
SAMPLE_DIR ?= .cache/sample
BUILD_DIR ?= .cache/build
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-done
# setup reruns only when the project metadata, this file or the requested torch/extras change
SETUP_KEY := $(shell cat pyproject.toml Makefile 2>/dev/null | cksum | cut -d' ' -f1) $(TORCH_SPEC) $(EXTRAS)

.PHONY: setup demo demo-train test bench lint clean

setup:
	@if [ "$$(cat $(STAMP) 2>/dev/null)" = "$(SETUP_KEY)" ]; then echo "setup: $(VENV) is up to date"; else \
	  set -e; \
	  test -x $(BIN)/python || $(PYTHON) -m venv $(VENV); \
	  echo "setup: installing $(TORCH_SPEC)"; \
	  $(BIN)/python -m pip install -q $(TORCH_SPEC); \
	  echo "setup: installing realportrait[$(EXTRAS)]"; \
	  $(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"; \
	  echo "$(SETUP_KEY)" > $(STAMP); \
	fi

demo: setup
	$(BIN)/rp-data build --sample --sample-dir $(SAMPLE_DIR) --out $(BUILD_DIR)
	$(BIN)/rp-data report $(BUILD_DIR)

# After `make demo`: the stand-in VAE, both training stages on 2 CPU ranks, rp-animate and rp-eval (about 20 min)
demo-train: setup
	$(BIN)/python -m training.demo --build $(BUILD_DIR) --sample $(SAMPLE_DIR)

test: setup
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/model.py
	$(BIN)/python bench/loader.py
	$(BIN)/python bench/validation_startup.py
	$(BIN)/python bench/build_costs.py

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf .cache .pytest_cache .ruff_cache *.egg-info
