# relations_etl: `make demo` sets up and runs the nightly flow on the sample lists; `make test`
# runs the whole suite. Both create .venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Closed network: no telemetry from Prefect; the demo keeps Prefect's state inside the warehouse.
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1

.PHONY: demo test faults install lint typecheck schemas bench clean chromium

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	PREFECT_HOME=$(CURDIR)/warehouse/.prefect RELATIONS_ETL_REPORT_COUNTRY=KAZ \
		$(BIN)/relations-etl run --config examples/sources.yaml
	$(BIN)/relations-etl report --country KAZ --year 2023

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP) lint typecheck chromium
	$(BIN)/python -m pytest

faults: $(STAMP)
	$(BIN)/python -m pytest -m faults

# The HTML report test opens the page in Debian's Chromium; as root (CI) it is installed here.
# If that fails the test says why: it skips on a developer's machine and fails under CI.
chromium:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y --no-install-recommends chromium \
		|| { apt-get update && apt-get install -y --no-install-recommends chromium; } \
		|| echo "could not install chromium: the HTML report test cannot run" >&2; \
	fi

schemas: $(STAMP)
	$(BIN)/relations-etl contracts --out schemas

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf warehouse/relations.duckdb warehouse/relations.duckdb.wal warehouse/parquet warehouse/.prefect
