"""The benchmarks as data and one runner: `python -m benchmarks SUB-COMMAND ...` (benchmarks/__main__.py; `--help`
lists the sub-commands). Datasets and their selection studies are in benchmarks/datasets.yaml, each study's candidates
in benchmarks/spaces/<study>.yaml (`cxr sweep` spaces), every figure in benchmarks/results/*.json."""
