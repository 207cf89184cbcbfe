# Two commands for a fresh machine: `make demo` and `make test`. Both set themselves up.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
DEMO   ?= demo-output

.PHONY: install demo test test-all bench clean

# Installs the engine + first-party plugins (editable) and the example third-party plugin,
# exactly as a user would: through pip and the `voxelstream` entry-point group.
$(STAMP): pyproject.toml examples/voxelstream-example/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]" -e examples/voxelstream-example
	touch $(STAMP)

install: $(STAMP)

# One line per task's demo (voxelstream TASK demo), each into its own folder under $(DEMO).
demo: $(STAMP)
	$(VENV)/bin/voxelstream nodules demo --out $(DEMO)/nodules
	$(VENV)/bin/voxelstream dr demo --out $(DEMO)/dr

test: $(STAMP)
	$(PY) -m pytest -q

# Also the slow end-to-end tests.
test-all: $(STAMP)
	$(PY) -m pytest -q -m "slow or not slow"

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache
