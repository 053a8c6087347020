# relations_etl: `make demo` sets up and runs the nightly flow on the sample lists; `make test`
# runs the whole suite. Both create .venv on first use. `make deploy` and `make worker` put the
# flows on a Prefect server (PREFECT_API_URL) and run them there.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Closed network: no telemetry from Prefect; the demo keeps Prefect's state inside the warehouse.
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1

.PHONY: demo test faults install lint typecheck schemas bench clean chromium deploy worker

# uv, itself installed from PyPI into the venv, resolves and installs the ~140 packages in
# seconds where pip takes minutes; pip installs them where uv cannot be had or fails.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	if $(BIN)/python -m pip install --quiet uv \
		&& $(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[dev]'; then :; else \
		echo "uv could not install the environment: installing with pip" >&2; \
		$(BIN)/python -m pip install --quiet --upgrade pip \
		&& $(BIN)/python -m pip install --quiet -e '.[dev]'; fi
	touch $(STAMP)

# The venv's bytecode, compiled once: uv writes none, and where PYTHONDONTWRITEBYTECODE is set (as
# in CI's environment) Python caches none either, so every process the suite starts (its workers,
# the commands run as processes, Prefect's servers and process workers, Dask's workers) compiled
# Prefect, pandas and the rest from source again (importing the flows: 4.4 s of CPU, not 1.9 s;
# the suite: 630 s of CPU, not 484 s). Files of a newer Python (some packages ship them) fail to
# compile and are left out.
BYTECODE := $(VENV)/.bytecode
$(BYTECODE): $(STAMP)
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib > /dev/null || :
	touch $(BYTECODE)

install: $(STAMP) $(BYTECODE)

demo: $(STAMP)
	PREFECT_HOME=$(CURDIR)/warehouse/.prefect RELATIONS_ETL_REPORT_COUNTRY=KAZ \
		$(BIN)/relations-etl run --config examples/sources.yaml
	$(BIN)/relations-etl report --country KAZ --year 2023

# The work pool named in flows/prefect.yaml.
POOL := relations-etl

# Every deployment of flows/prefect.yaml on the server of PREFECT_API_URL; the process work pool
# is created first when it does not exist (an existing one is left as it is).
NEED_API := from prefect.settings import get_current_settings as s; raise SystemExit(None \
	if s().api.url else 'make deploy: PREFECT_API_URL is not set; point it at your Prefect server')
deploy: $(STAMP)
	@$(BIN)/python -c "$(NEED_API)"
	$(BIN)/prefect work-pool inspect $(POOL) >/dev/null 2>&1 \
		|| $(BIN)/prefect work-pool create $(POOL) --type process
	$(BIN)/prefect --no-prompt deploy --all --prefect-file flows/prefect.yaml

# A process worker for those deployments, running them from this clone.
worker: $(STAMP)
	RELATIONS_ETL_REPO=$(CURDIR) $(BIN)/prefect worker start --pool $(POOL)

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

# the suite on TEST_WORKERS processes (pytest-xdist; `make test TEST_WORKERS=0` runs it in one)
TEST_WORKERS ?= auto
test: $(STAMP) $(BYTECODE) lint typecheck chromium
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup

faults: $(STAMP) $(BYTECODE)
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

# rows of the synthetic visits list: `make bench SIZE=10000000` for 10M
SIZE ?= 1000000
bench: $(STAMP)
	$(BIN)/python bench/run.py --rows $(SIZE)

clean:
	rm -rf warehouse/relations.duckdb warehouse/relations.duckdb.wal warehouse/parquet warehouse/.prefect \
		warehouse/reports warehouse/logs warehouse/.run.lock
