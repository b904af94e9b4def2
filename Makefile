# The two commands the README starts with. Both install what they need first.
PY ?= python3
# One test worker more than the cores: many tests wait on a broker or a server part of the time.
TEST_WORKERS ?= $(shell echo $$(( $$(nproc) + 1 )))

.PHONY: demo console test lint bench

demo:  ## simulate ERP traffic, run it through a local Kafka broker, print incidents
	@scripts/setup.sh
	$(PY) -m breachwatch demo

console:  ## the console on the demo's database (after `make demo`), with the demo sign-in it printed
	@test -f demo/breachwatch.db || { echo "no demo database yet: run make demo first"; exit 1; }
	@cat demo/console-signin.txt
	@# Plain-HTTP cookies: this serves 127.0.0.1 only, for a first look.
	BREACHWATCH_CONSOLE_SECURE_COOKIES=false $(PY) -m breachwatch console --db sqlite:///demo/breachwatch.db

test:  ## the layers, then the whole test suite, with a real Kafka broker, PostgreSQL, SMTP and Chromium
	@scripts/setup.sh --test
	$(PY) scripts/lint_imports.py
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal

lint:
	ruff check .
	$(PY) scripts/lint_imports.py

bench:
	$(PY) -m bench.throughput
