# Everything a new user needs: `make fit VIDEO=person.mp4` and `make test` set up .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.thg-installed
# On a machine with a CUDA torch, install into that environment instead: pip install -e '.[preprocess]'
TORCH_SPEC ?= torch==2.13.0
VIDEO ?=
OUT ?=
ARGS ?=
PYTEST_ARGS ?= -q

.PHONY: setup test fit lint cuda-check clean

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check "setuptools>=64,<81" wheel
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q --disable-pip-version-check "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-build-isolation -e ".[preprocess,tensorboard,dev,phones,serve,cluster]"
	touch $(STAMP)

setup: $(STAMP)

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; rc=0; fi; exit $$rc

fit: setup
	@if [ -z "$(VIDEO)" ]; then echo "usage: make fit VIDEO=person.mp4 [OUT=data/name/run] [ARGS='--preset tiny']"; exit 2; fi
	$(BIN)/thg-nerf fit "$(VIDEO)" $(if $(OUT),-o "$(OUT)") $(ARGS)

lint: setup
	$(BIN)/ruff check .

cuda-check:
	bash tools/check_cuda_compile.sh

clean:
	rm -rf $(VENV) build *.egg-info
