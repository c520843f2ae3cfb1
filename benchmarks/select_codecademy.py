"""Model selection for the default config, on VALIDATION only (the carved 15 % of train; test is never read).

Usage: python benchmarks/select_codecademy.py [name ...]   -> benchmarks/results/select_codecademy.json
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from cxr.config import build_config
from cxr.evaluation.evaluate import evaluate_run
from cxr.training.train import train

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "covid19-codecademy"
CANDIDATES = {
    "smallnet-224": dict(model="smallnet", image_size=224, epochs=40),
    "smallnet-256-bal": dict(model="smallnet", image_size=256, epochs=40, class_weight="balanced"),
    "vanilla-224": dict(model="vanilla-cnn", image_size=224, epochs=40),
    "smallnet-224-auc": dict(model="smallnet", image_size=224, epochs=40, monitor="val_auc"),
    "resnet18-224": dict(model="resnet18", image_size=224, epochs=30),
}


def main(names: list[str]) -> None:
    out_file = Path(__file__).parent / "results" / "select_codecademy.json"
    results = json.loads(out_file.read_text()) if out_file.is_file() else {}
    for name in names or list(CANDIDATES):
        cfg = build_config(None, {"data": DATA, **CANDIDATES[name]})
        run = Path("runs/select") / name
        t0 = time.perf_counter()
        train(cfg, run, overwrite=True)
        val = evaluate_run(run, "val")
        results[name] = {
            "config": CANDIDATES[name],
            "val_accuracy": val["accuracy"],
            "val_macro_f1": val["macro_avg"]["f1-score"],
            "val_auc": val["roc_auc"],
            "train_seconds": round(time.perf_counter() - t0, 1),
        }
        print(name, results[name], flush=True)
        out_file.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
