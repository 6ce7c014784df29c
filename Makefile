# Two commands on a fresh machine: `make demo` (the main job on an embedded default) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test clean

setup: $(VENV)/.installed

# torch is pinned to the CPU build first, so that the package's torch>=2.1 installs nothing more
$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[onnx,test]'
	touch $@

demo: setup
	$(BIN)/edge-inspector demo

test: setup
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) reports *.egg-info
