"""Each benchmark model under the acquisition-shift battery, and the share of films its input guard flags: its own
test split, and other datasets' chest films (other sites: flagging them is right).

    python benchmarks/stress_guard.py codecademy runs/demo [--backend onnx]
    python benchmarks/stress_guard.py kermany runs/bench-kermany

Results go to benchmarks/results/stress_guard.json, one entry per benchmark (a re-run replaces its entry), with the
model (weights_sha256 and config_sha256, common.model_identity; taken after a guard is fitted, as it is measured), the
machine, the backend and the load average while it ran (stress timings are only comparable on a quiet machine).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, SHARED_DATA, machine, model_identity  # noqa: E402

BENCHMARKS = ("codecademy", "kermany", "radiography", "pneumoniamnist")
# every dataset's test films as the other sites (a benchmark's own is skipped)
OTHER_FILMS = {
    "codecademy": SHARED_DATA / "covid19-codecademy" / "test",
    "kermany": SHARED_DATA / "chest-xray-pneumonia" / "test",
    "radiography": SHARED_DATA / "covid19-radiography" / "test",
}


def flag_rate(bundle, folder: Path) -> dict:
    preds = bundle.predict([folder], batch_size=64)
    return {"films": len(preds.paths), "flagged": preds.flagged, "share": round(preds.flagged / max(1, len(preds.paths)), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("benchmark", choices=BENCHMARKS)
    parser.add_argument("run", type=Path, help="the benchmark's trained run directory")
    parser.add_argument("--backend", default="auto", help="auto | onnx | torch (stress only)")
    args = parser.parse_args()

    from cxr.evaluation.evaluate import evaluation_key, split_files
    from cxr.evaluation.stress import run_stress
    from cxr.inference.bundle import Bundle
    from cxr.inference.guard_fit import fit_run_guard

    bundle = Bundle.load(args.run, backend="torch")
    if bundle.guard is None:  # a run trained before cxr 0.6: fit its guard from its own splits.csv
        fit_run_guard(args.run)
        bundle = Bundle.load(args.run, backend="torch")
    identity = model_identity(args.run)  # the model file as measured, its guard included
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    stress = run_stress(args.run, "test", backend=args.backend)  # the run's own data (config.yaml)
    seconds = round(time.perf_counter() - t0, 1)
    own_key = evaluation_key(args.run, "test")
    own_files = split_files(args.run, "test", bundle.classes)
    own = bundle.predict(own_files.paths, batch_size=64)
    entry = {
        "run": str(args.run),
        **identity,
        "model": bundle.meta.model,
        "image_size": bundle.meta.image_size,
        "precision": "fp32 (inference)",
        "stress": {
            "key": stress["key"], "n": stress["n"], "backend": stress["backend"], "seconds": seconds,
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "clean_accuracy": stress["clean"]["accuracy"], "summary": stress["summary"],
        },
        "guard": {
            "fitted": bundle.guard.fitted,
            f"own test ({own_key})": {"films": len(own.paths), "flagged": own.flagged,
                                       "share": round(own.flagged / max(1, len(own.paths)), 4)},
            **{f"{name} test films": flag_rate(bundle, folder) for name, folder in OTHER_FILMS.items()
               if name != args.benchmark},
        },
    }  # fmt: skip
    path = RESULTS / "stress_guard.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    results[args.benchmark] = {**entry, "machine": machine()}
    path.write_text(json.dumps(results, indent=2))
    print(json.dumps(entry, indent=2))


if __name__ == "__main__":
    main()
