# Set-up and the two entry points of the README: `make demo` and `make test`.
# Each creates .venv on first use and installs promptseg into it (editable, with the
# CUDA extension when nvcc and a CUDA torch are present; see setup.py).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_IMAGE ?= ../shared/images/truck.jpg
PIP := $(BIN)/pip install --quiet --disable-pip-version-check

.PHONY: demo test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip "setuptools>=77" wheel

$(VENV)/.installed: $(BIN)/python pyproject.toml setup.py
	$(PIP) torch torchvision
	$(PIP) --no-build-isolation --editable .
	touch $@

# SAM2_BUILD_CUDA=0: the official sam2 (a test extra) without its CUDA extension, which its parity tests do not use.
$(VENV)/.installed-test: $(VENV)/.installed
	SAM2_BUILD_CUDA=0 $(PIP) --no-build-isolation --editable ".[test]"
	touch $@

demo: $(VENV)/.installed
	$(BIN)/promptseg info
	$(BIN)/promptseg predict --synthetic-scene 7 --out demo_out/synthetic_scene
	$(BIN)/promptseg predict $(DEMO_IMAGE) --point 800,560 --box 100,200,1720,900 --multimask --out demo_out/truck

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) demo_out build *.egg-info promptseg/_C*.so
