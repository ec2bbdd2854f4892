# Two commands a newcomer needs: `make bench` (the main job) and `make test`.
# Each creates the virtual environment on first use and is safe to repeat.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: bench test lint format clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

# torch==2.13.0 first: the CPU build; the package's range then installs no other torch.
$(VENV)/.dev: $(PY) pyproject.toml
	$(PIP) install "torch==2.13.0"
	$(PIP) install -e ".[dev]"
	touch $@

$(VENV)/.bench: $(VENV)/.dev
	$(PIP) install -e ".[dev,bench]"
	touch $@

bench: $(VENV)/.bench
	$(VENV)/bin/taylorch bench

# The tests compare taylorch with its peers (scipy, torchmin, optimistix, lmfit, sklearn data),
# so they need the bench extra too.
test: $(VENV)/.bench
	$(PY) -m pytest -n 2 -q

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.dev
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
