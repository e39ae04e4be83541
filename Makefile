# The two commands (README): `make book` builds the book, `make test` runs the tests.
# Both create .venv and install the pinned requirements on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
STAMP  := $(VENV)/.installed

.PHONY: test book book-html reproduce bench venv clean help
help:
	@echo "make book       build the book (executes the notebooks on CPU) -> _build/html/index.html"
	@echo "make book-html  rebuild the site from the committed executed notebooks (no execution)"
	@echo "make test       run the test suite (unit tests, notebook checks, browser check)"
	@echo "make reproduce  the paper-scale queue (runs/plan.toml), resumable; DEVICE=cpu|cuda MAX_MINUTES=N THREADS=N WORKERS=N"
	@echo "make bench      time the meta-iteration paths (benchmarks/)"

venv: $(STAMP)
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

# pytest exits non-zero when it collects no test, so `make test` fails if nothing ran.
# Then nbval re-executes the committed executed notebooks (book/executed/): cells tagged
# nbval-check-output (tables, verdicts, numbers read from results/) must reproduce their committed
# output exactly, the others must run without error. The browser check (tests/test_browser.py)
# needs Chromium, installed here when missing.
CHROMIUM := /usr/bin/chromium
test: $(STAMP) $(CHROMIUM)
	REPTILE_REQUIRE_BROWSER=1 $(PY) -m pytest -q --durations=15
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -p no:cacheprovider --nbval-lax --nbval-current-env book/executed

$(CHROMIUM):
	apt-get install -y --no-install-recommends chromium || (apt-get update && apt-get install -y --no-install-recommends chromium)

# Execute every notebook (notebooks/*.py -> book/executed/*.ipynb: committed paper-scale results
# where they exist, smoke runs on the CPU otherwise), then build the site into _build/html.
book: $(STAMP)
	$(PY) tools/build_book.py --execute

# Rebuild the site from the committed executed notebooks, executing nothing.
book-html: $(STAMP)
	$(PY) tools/build_book.py

# The paper-scale queue (runs/plan.toml), in order: train, evaluate, write results/, re-execute the
# chapter. Checkpoints every 5 minutes and on SIGTERM / Ctrl-C; run it again to resume where it stopped.
# DEVICE=auto|cpu|cuda, MAX_MINUTES=N to stop after N minutes, THREADS=N torch threads (on a CPU shared
# with other work, THREADS=1 avoids OpenMP threads waiting on each other); `reptile status` says where it stands.
DEVICE ?= auto
MAX_MINUTES ?=
THREADS ?=
WORKERS ?=
reproduce: $(STAMP)
	$(PY) -m reptile_lib.cli reproduce --device $(DEVICE) $(if $(MAX_MINUTES),--max-minutes $(MAX_MINUTES)) \
	  $(if $(THREADS),--threads $(THREADS)) $(if $(WORKERS),--workers $(WORKERS))

# CUDA if present (the paper's sizes), else a --quick CPU run; e.g. make bench BENCH_ARGS="--threads 1"
bench: $(STAMP)
	$(PY) benchmarks/bench.py $(BENCH_ARGS)

clean:
	rm -rf _build .pytest_cache
