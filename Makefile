# Continuum: `make run` starts the portal with demo data; `make test` runs ruff, the import-layering contracts
# (.importlinter) and the whole test suite.
# Both work from a fresh clone: they create .venv from the machine's python3 and install what is missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
# Two pytest workers (pytest-xdist): the machine's two cores; `make test PYTEST_ARGS=` runs the suite in one process.
PYTEST_ARGS ?= -n 2
PORT ?= 8000

.PHONY: run run-prod test lint format migrate seed venv install system-deps clean help openapi screenshots test-calendar check-local-imports

help:
	@echo "make run   - start the portal (web + Celery worker + beat) with demo data on http://127.0.0.1:8000 (PORT=...)"
	@echo "make run-prod - the production profile on this machine: PostgreSQL + Redis, gunicorn, 3 Celery workers (queues split), beat"
	@echo "               (RUN_PROD_PORT=8000 RUN_PROD_DB=continuum_prod RUN_PROD_REDIS_DB=3; docs/deploy.md)"
	@echo "make test  - ruff + the whole pytest suite"
	@echo "make test-calendar - the date-sensitive tests with the clock pinned to month ends, leap days and 1st-of-month minutes"
	@echo "make screenshots - rerun the browser tests and regenerate the README images in docs/screenshots/"

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || { \
	  echo "Continuum needs Python 3.11 or newer; '$(PYTHON)' is $$($(PYTHON) --version 2>&1)."; \
	  echo "Install it (e.g. 'apt-get install -y python3.11 python3.11-venv') or run 'make PYTHON=python3.11 ...'."; \
	  exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(STAMP): $(PY) requirements.txt requirements-dev.txt
	$(PIP) install --quiet -r requirements-dev.txt
	@touch $(STAMP)

venv install: $(STAMP)

# Debian packages the app and its tests need: python3-venv (to create .venv), Chromium for the Playwright browser
# tests (/usr/bin/chromium), WeasyPrint's Pango/HarfBuzz libraries and a font for invoice PDFs. Installed with
# apt-get only when missing (needs root); a single dpkg-query when everything is there.
SYSTEM_PACKAGES := python3-venv chromium libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core
system-deps:
	@scripts/apt-ensure $(SYSTEM_PACKAGES)

migrate: $(STAMP)
	$(PY) manage.py migrate --noinput

seed: migrate
	$(PY) manage.py seed_demo

run: system-deps seed
	@echo
	@echo "  Continuum is starting on http://127.0.0.1:$(PORT)  (Ctrl-C stops web, worker and beat)"
	@echo "  Demo logins (password: continuum-demo):"
	@echo "    customers: owner@acme.test, ap@acme.test, dev@acme.test, owner@globex.test, owner@initech.test, owner@umbrella.test"
	@echo "    back office (http://127.0.0.1:$(PORT)/admin/): admin@continuum.test, support@continuum.test, billing@continuum.test"
	@echo "  E-mails (invitations, invoices with their PDF, reminders) are written to var/mail/ instead of being sent."
	@echo
	DJANGO_DEBUG=1 SITE_URL=$${SITE_URL:-http://127.0.0.1:$(PORT)} \
	EMAIL_BACKEND=$${EMAIL_BACKEND:-django.core.mail.backends.filebased.EmailBackend} \
	exec $(VENV)/bin/honcho start -f Procfile -p $(PORT)

# The production profile (Procfile.prod) on loopback: see scripts/run-prod and docs/deploy.md.
run-prod: system-deps $(STAMP)
	scripts/run-prod

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache
	$(PY) scripts/check-local-imports

# Function-local imports of project modules without a `# local import: <reason>` comment (part of `lint`).
check-local-imports: $(STAMP)
	$(PY) scripts/check-local-imports

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: system-deps lint
	$(VENV)/bin/pytest -p no:cacheprovider $(PYTEST_ARGS)

# The date-sensitive part of the suite once per awkward instant, with the clock pinned for the whole session by
# CONTINUUM_TEST_NOW (tests/support/clock.py; time keeps ticking; a test that pins its own clock wins): tests/calendar
# (demo seed with the README's promises and the Umbrella dashboard, the billing run at 00:10 on the 1st with a seat
# change, renewal and catch-up on the anchor, a change now, billing_run_task's as_of), proration, exemptions, the
# dashboard and the portal's change pages. One demo seed per date keeps the six runs bounded; the hypothesis period
# properties draw their own dates and run once, in `make test`.
CALENDAR_NOWS ?= 2027-01-31T12:00:00Z 2027-02-28T23:30:00Z 2027-03-01T00:10:00Z 2028-02-29T12:00:00Z \
	2028-12-31T23:30:00Z 2027-05-01T00:05:00Z
CALENDAR_TESTS ?= tests/calendar tests/subscriptions/test_proration.py tests/billing/test_exemptions.py \
	tests/portal/test_changes.py tests/portal/test_dashboard.py
test-calendar: $(STAMP)
	@set -e; for now in $(CALENDAR_NOWS); do \
	  echo "=== make test-calendar: clock pinned at $$now"; \
	  CONTINUUM_TEST_NOW=$$now $(VENV)/bin/pytest -p no:cacheprovider -q -n 2 -m "not browser and not integration" \
	    -k "not names_features_the_way" $(CALENDAR_TESTS) $(PYTEST_ARGS); \
	done

# Browser tests save screenshots under var/screenshots/ (ignored by git) so `make test` never dirties the tree; this
# target reruns them with CONTINUUM_SCREENSHOTS=docs to regenerate the images the README shows. Commit the result.
screenshots: system-deps $(STAMP)
	CONTINUUM_SCREENSHOTS=docs $(VENV)/bin/pytest -p no:cacheprovider -q tests/browser

# Regenerate the committed OpenAPI schema (tests/api/test_schema.py fails when it is out of date).
openapi: $(STAMP)
	$(PY) manage.py spectacular --validate --fail-on-warn --file docs/openapi.yaml

clean:
	rm -rf var/ .pytest_cache .ruff_cache
