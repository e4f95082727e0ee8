# FlakeGuard — set-up and everyday commands. Run `make help` for the list.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install demo test test-fast conformance chaos bench lint format run worker beat flower up down clean

help:  ## Show this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt client/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11+ is required" >&2; exit 1; }
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { \
		echo "installing python3-venv with apt-get" >&2; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	$(PY) -m pip install -q --no-deps -e ./client
	@touch $(STAMP)

install: $(STAMP)  ## Create .venv and install FlakeGuard with its dev tools

demo: $(STAMP)  ## Import a bundled sample history on the embedded default and show the result
	$(PY) manage.py migrate --noinput -v 0
	$(PY) manage.py demo

test: $(STAMP)  ## Run the whole suite (server, CI client, pages in headless Chromium) against throwaway PostgreSQL and Redis
	scripts/ensure-test-tools.sh
	scripts/with-services.sh $(PY) -m pytest $(PYTEST_ARGS)
	cd client && ../$(PY) -m pytest -q -p no:cacheprovider

conformance: $(STAMP)  ## Check parse_junit against the JUnit corpus (FLAKEGUARD_JUNIT_CORPUS, default ../shared/junit-corpus)
	$(PY) scripts/conformance.py

chaos: $(STAMP)  ## Import a few hundred runs through the broker while workers, Redis, PostgreSQL and GitHub fail; check nothing is lost or doubled
	scripts/with-services.sh $(PY) -m pytest tests/chaos -m chaos -s -q -p no:cacheprovider --timeout 600

bench: $(STAMP)  ## Parser throughput and memory; import rate vs raw COPY; recompute, analyze, whole-command rates; quarantine list; pages; bytes per stored result
	$(PY) -m bench.parser
	scripts/with-services.sh $(PY) -m bench.ingest
	scripts/with-services.sh $(PY) -m bench.analysis
	WITH_SERVICES_DURABLE=1 scripts/with-services.sh $(PY) -m bench.analysis \
		--tests 1000 --runs 10 --rounds 1 --analyze-tests 500000 --analyze-runs 5
	WITH_SERVICES_DURABLE=1 scripts/with-services.sh $(PY) -m bench.command
	scripts/with-services.sh $(PY) -m bench.quarantine
	scripts/with-services.sh $(PY) -m bench.pages
	scripts/with-services.sh $(PY) -m bench.storage

lint: $(STAMP)  ## ruff lint and format check, import layers, types of the pure cores
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

format: $(STAMP)  ## Apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

run: $(STAMP)  ## Serve the web app on http://127.0.0.1:8000/
	$(PY) manage.py migrate --noinput -v 0
	$(PY) manage.py runserver 127.0.0.1:8000

worker: $(STAMP)  ## Start a Celery worker on every queue (needs REDIS_URL)
	$(VENV)/bin/celery -A flakeguard worker -Q runs-ingest,runs-analyze,tests-recompute,polling,scheduler -l info

beat: $(STAMP)  ## Start Celery Beat (needs REDIS_URL)
	$(VENV)/bin/celery -A flakeguard beat -l info

flower: $(STAMP)  ## Start Flower on http://127.0.0.1:5555/ (needs REDIS_URL)
	$(VENV)/bin/celery -A flakeguard flower --address=127.0.0.1 --port=5555

up: $(STAMP)  ## Start the production-shaped stack here (PostgreSQL, Redis, gunicorn, a worker per queue, Beat, Flower); logs in .stack/logs
	scripts/stack.sh up

down:  ## Stop what `make up` started (its data stays in .stack/)
	scripts/stack.sh down

clean:  ## Remove the virtualenv, the embedded database and demo data
	scripts/stack.sh clean 2>/dev/null || true
	rm -rf $(VENV) flakeguard.sqlite3* .demo *.egg-info
