# Set-up and the two entry points of the README: `make demo` and `make test`.
# Each creates .venv on first use and installs promptseg into it (editable, with the
# CUDA extension when nvcc and a CUDA torch are present; see setup.py).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_IMAGE ?= tests/data/images/truck.jpg
DEMO_IMAGES ?= tests/data/images
DEMO_LABELS ?= truck,wheel,window,bag,dog,person
DEMO_TEXT ?= yellow circle
PIP := $(BIN)/pip install --quiet --disable-pip-version-check

.PHONY: demo test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip "setuptools>=77" wheel

$(VENV)/.installed: $(BIN)/python pyproject.toml setup.py
	$(PIP) torch torchvision
	$(PIP) --no-build-isolation --editable .
	touch $@

$(VENV)/.installed-annotate: $(VENV)/.installed
	$(PIP) --no-build-isolation --editable ".[annotate]"
	touch $@

# SAM2_BUILD_CUDA=0: the official sam2 (a test extra) without its CUDA extension, which its parity tests do not use.
$(VENV)/.installed-test: $(VENV)/.installed
	SAM2_BUILD_CUDA=0 $(PIP) --no-build-isolation --editable ".[test]"
	touch $@

demo: $(VENV)/.installed-annotate
	$(BIN)/promptseg info
	$(BIN)/promptseg predict --synthetic-scene 7 --out demo_out/synthetic_scene
	$(BIN)/promptseg predict $(DEMO_IMAGE) --point 800,560 --box 100,200,1720,900 --multimask --out demo_out/truck
	$(BIN)/python -c "from PIL import Image; from promptseg.data.concepts import generate_concept_scene as g; \
	s = g(7); Image.fromarray(s.image).save('demo_out/concepts.png'); \
	print('demo_out/concepts.png shows:', ', '.join(a.phrase() for a in s.attributes))"
	$(BIN)/promptseg predict demo_out/concepts.png --text "$(DEMO_TEXT)" --out demo_out/text
	@echo
	@echo "Annotate the demo images in the browser (then open http://127.0.0.1:8765/):"
	@echo "  $(BIN)/promptseg annotate $(DEMO_IMAGES) --out demo_out/annotations.json --labels $(DEMO_LABELS)"

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) demo_out build *.egg-info promptseg/_C*.so
