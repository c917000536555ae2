# Omoi. `make demo` runs the main job end to end on the embedded default; `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv demo test lint format migrate web worker beat flower clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

demo: venv
	$(PY) manage.py migrate --noinput
	$(PY) manage.py omoi demo $(DEMO_ARGS)

# The suite runs in TEST_PROCESSES processes (pytest-xdist; tests/parallel.py keeps them apart),
# then the tests that restart PostgreSQL or Redis run alone.
TEST_PROCESSES ?= 2
test: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) manage.py makemigrations --check --dry-run
	$(PY) -m pytest -n $(TEST_PROCESSES) --dist worksteal -m "not serial" $(PYTEST_ARGS)
	$(PY) -m pytest -m serial $(PYTEST_ARGS) || [ $$? -eq 5 ]  # 5: nothing selected

format: venv
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

migrate: venv
	$(PY) manage.py migrate --noinput

WEB_HOST ?= 127.0.0.1
WEB_PORT ?= 8000
# The ASGI server: event streams are long-lived responses. Open streams are closed after 3 s on
# shutdown (their clients reconnect and resume).
web: migrate
	$(VENV)/bin/uvicorn omoi.asgi:application --host $(WEB_HOST) --port $(WEB_PORT) --timeout-graceful-shutdown 3

worker: venv
	$(VENV)/bin/celery -A omoi worker -Q planning,execution,events,default --loglevel=INFO

beat: venv
	$(VENV)/bin/celery -A omoi beat --loglevel=INFO --schedule $${OMOI_DATA_DIR:-var}/celerybeat-schedule

flower: venv
	$(VENV)/bin/celery -A omoi flower --address=127.0.0.1 --port=$${FLOWER_PORT:-5555}

clean:
	rm -rf var .pytest_cache
