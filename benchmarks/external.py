"""External validation: a chosen benchmark model scored on another dataset that can honestly stand for another site.

    python benchmarks/external.py codecademy RUN      # on covid19-radiography's test split minus codecademy's copies
    python benchmarks/external.py radiography RUN     # on covid19-codecademy's test split (66 films)

Only the codecademy / radiography pair qualifies: both are COVID / Normal / Viral Pneumonia, and the radiography model
is trained without the films that re-appear in codecademy (benchmarks/run.py, pHash distance <= 56). Kermany and
PneumoniaMNIST are one collection at two sizes, and radiography's Viral Pneumonia films come from Kermany, so neither
of those pairs is another site. Each entry has the accuracy with 95 % bootstrap intervals, sensitivity per class, and
the share of films the model's input guard flags (flagging another site's films is the guard doing its job).
Results: benchmarks/results/external.json, one entry per benchmark (a re-run replaces it; keep the one it replaces in
results/history/ if a table still cites it), naming its model by weights_sha256 and config_sha256
(common.model_identity).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, SHARED_DATA, machine, model_identity  # noqa: E402

SITES = {  # model's benchmark -> (the other site's data, which split, what it is)
    "codecademy": (None, "test", "covid19-radiography test split minus copies of codecademy films"),
    "radiography": (SHARED_DATA / "covid19-codecademy", "test", "covid19-codecademy test split (66 films)"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("benchmark", choices=list(SITES))
    parser.add_argument("run", type=Path, help="the chosen model's run directory")
    args = parser.parse_args()

    from run import radiography_minus_codecademy

    from cxr.evaluation.evaluate import evaluate_run

    data, split, site = SITES[args.benchmark]
    data = data or radiography_minus_codecademy()
    identity = model_identity(args.run)
    metrics = evaluate_run(args.run, split, data=data, n_bootstrap=1000)
    guard = metrics.get("guard") or {}
    ci = metrics.get("ci", {})
    entry = {
        "run": str(args.run),
        **identity,  # weights_sha256, config_sha256, config_from, trained: the model these figures are of
        "site": site,
        "n": metrics["n"],
        "accuracy": metrics["accuracy"],
        "accuracy_ci95": ci.get("accuracy"),
        "roc_auc": metrics["roc_auc"],
        "recall": {c: metrics["per_class"][c]["recall"] for c in metrics["classes"]} if "per_class" in metrics else None,
        "guard_flagged": guard.get("flagged"),
        "guard_share": guard.get("share"),
        "command": f"python benchmarks/external.py {args.benchmark} {args.run}",
        "machine": machine(),
    }
    path = RESULTS / "external.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    results[args.benchmark] = entry
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=str))
    print(json.dumps(entry, indent=2, default=str))


if __name__ == "__main__":
    main()
