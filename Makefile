# Two commands for a newcomer: `make demo` and `make test`. Everything else installs itself.
SHELL := /bin/bash
# Use the machine's Python; never fetch an interpreter at run time.
export UV_PYTHON_DOWNLOADS := never
# Compile every installed module once at install: with PYTHONDONTWRITEBYTECODE set (as on CI machines) each process
# would otherwise compile dbt, Dagster and pandas from source on import, ~2 s per process.
export UV_COMPILE_BYTECODE := 1
UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := python3 -m uv
endif

.PHONY: env demo test test-spark lint format ui docs bench clean

env: .venv/.synced

.venv/.synced: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	$(UV) sync --frozen --quiet
	@touch $@

demo: env
	$(UV) run --frozen attribution demo

test: env
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen pytest

# The Spark target end to end, alone (a JVM; `make test` runs it too, beside everything else).
test-spark: env
	$(UV) run --frozen pytest -m spark -p no:cacheprovider

lint format: env
	$(UV) run --frozen ruff check --fix .
	$(UV) run --frozen ruff format .

ui: env
	$(UV) run --frozen attribution ui

docs: env
	$(UV) run --frozen dbt docs generate
	$(UV) run --frozen dbt docs serve --host 127.0.0.1 --port 8080 --no-browser

bench: env
	$(UV) run --frozen python -m lab.bench

clean:
	rm -rf data target logs .venv
