# The two commands (README): `make book` builds the book, `make test` runs the tests.
# Both create .venv and install the pinned requirements on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
STAMP  := $(VENV)/.installed

.PHONY: test book reproduce bench venv clean help
help:
	@echo "make book       build the book (executes the notebooks on CPU) -> _build/html/index.html"
	@echo "make test       run the test suite (unit tests, notebook checks, browser check)"
	@echo "make reproduce  paper-scale runs on a GPU (rewrites results/ and the executed notebooks)"
	@echo "make bench      time the meta-iteration paths (benchmarks/)"

venv: $(STAMP)
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

# pytest exits non-zero when it collects no test, so `make test` fails if nothing ran.
test: $(STAMP)
	$(PY) -m pytest -q

book: $(STAMP)
	$(PY) -m reptile_lib.cli train --config omniglot_5way --profile smoke --seeds 0 --out _build/smoke

reproduce: $(STAMP)
	@echo "reproduce: filled in by the GPU issues"; exit 1

# CUDA if present (the paper's sizes), else a --quick CPU run; e.g. make bench BENCH_ARGS="--threads 1"
bench: $(STAMP)
	$(PY) benchmarks/bench.py $(BENCH_ARGS)

clean:
	rm -rf _build .pytest_cache
