# The two commands the README starts with. Both install what they need first.
PY ?= python3

.PHONY: demo test lint bench

demo:  ## simulate ERP traffic, run it through a local Kafka broker, print incidents
	@scripts/setup.sh
	$(PY) -m breachwatch demo

test:  ## the layers, then the whole test suite, with a real Kafka broker, PostgreSQL, SMTP and Chromium
	@scripts/setup.sh --test
	$(PY) scripts/lint_imports.py
	$(PY) -m pytest -q

lint:
	ruff check .
	$(PY) scripts/lint_imports.py

bench:
	$(PY) -m bench.throughput
