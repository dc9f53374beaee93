# Two commands on a fresh machine: `make demo` runs the loop end to end, `make test` runs the tests.
SHELL := /bin/bash
UV := python3 -m uv
LS_VENV := .services/labelstudio-venv

.PHONY: install demo test test-slow test-fast lint up down clean

install: ## app environment (locked) + Label Studio server in its own environment
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install -q uv
	$(UV) sync --frozen
	@test -x $(LS_VENV)/bin/label-studio || ( $(UV) venv -q --allow-existing --python 3.11 $(LS_VENV) && \
		$(UV) pip sync -q --python $(LS_VENV)/bin/python services/labelstudio.lock.txt )

demo: install ## simulate a few days and run the whole loop; prints a summary and where to look
	$(UV) run fraudloop demo

test: install ## the whole suite: unit, data, model, integration (real Label Studio, MLflow, Prefect, PostgreSQL)
	@# the browser test drives Debian's Chromium (a Playwright browser download does not work here):
	@# installed with apt when run as root, else the run ends naming the skip and the command
	@test -x /usr/bin/chromium || [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null || \
		{ echo "installing Debian's chromium for the browser test (apt-get)" && apt-get update -qq && \
		  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "could not install chromium: the browser test will be skipped"
	$(UV) run pytest -q -m "not slow"

test-slow: install ## the slow ones: benchmark smoke runs and the server profile (CI runs them after `make test`)
	$(UV) run pytest -q -m slow

test-fast: install ## without the integration tests
	$(UV) run pytest -q -m "not integration and not slow"

lint: install ## ruff (lint + format) and mypy
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run mypy fraudloop models labeling monitoring pipeline flows api cli simulation benchmarks
	$(UV) run lint-imports

up: install
	$(UV) run fraudloop up

down:
	$(UV) run fraudloop down

clean:
	rm -rf .fraudloop
