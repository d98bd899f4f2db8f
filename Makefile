# The commands people actually run. PYTHON may point at a virtualenv's interpreter.
PYTHON ?= python3

.PHONY: install install-dev benchmark test test-fast lint bench-predictability table docs

install:
	PYTHON=$(PYTHON) bash scripts/install.sh

install-dev:
	PYTHON=$(PYTHON) bash scripts/install.sh --dev

## Quickstart 1: install, then train + attack the embedded pix2pix victim; writes results/embedded_pix2pix/
benchmark: install
	$(PYTHON) -m miabench.benchmark

## Quickstart 2: install, then run the whole test suite (what CI runs)
test: install-dev
	$(PYTHON) -m pytest -q

test-fast: 
	$(PYTHON) -m pytest -q -m "not slow"

lint:
	ruff check src tests experiments && ruff format --check src tests experiments

bench-predictability:
	$(PYTHON) experiments/bench/predictability.py

table:
	$(PYTHON) -m miabench.make_table table=shafran2021_t1

## The documentation site (guides, dataset cards, config and API reference) into build/site;
## strict: any warning fails. Needs the dev extra (mkdocs, mkdocstrings[python]).
docs:
	$(PYTHON) -m mkdocs build --strict
