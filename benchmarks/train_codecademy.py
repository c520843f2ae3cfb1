"""Train the default config on covid19-codecademy, evaluate on its 66 test images, time training and prediction.

Usage: python benchmarks/train_codecademy.py [--config configs/default.yaml] [--out runs/bench-codecademy]
Writes benchmarks/results/codecademy.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from common import ROOT, SHARED_DATA, write_result

import cxr
from cxr.config import build_config
from cxr.evaluation.evaluate import evaluate_run
from cxr.training.train import train


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "default.yaml")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-codecademy")
    args = ap.parse_args()
    data = SHARED_DATA / "covid19-codecademy"
    cfg = build_config(args.config, {"data": data})

    t0 = time.perf_counter()
    train(cfg, args.out, overwrite=True)
    train_wall = time.perf_counter() - t0
    test = evaluate_run(args.out, "test")
    val = json.loads((args.out / "metrics.json").read_text()).get("val") or evaluate_run(args.out, "val")
    training = json.loads((args.out / "metrics.json").read_text())["training"]

    bundle = cxr.load(args.out)
    bundle.predict([data / "test"])  # warm-up
    t0 = time.perf_counter()
    n = len(bundle.predict([data / "test"], batch_size=32).paths)
    predict_ips = n / (time.perf_counter() - t0)

    write_result(
        "codecademy",
        {
            "command": "python benchmarks/train_codecademy.py",
            "config": cfg.to_yaml_dict() | {"data": str(data)},
            "test": {
                "n": test["n"],
                "accuracy": test["accuracy"],
                "macro_f1": test["macro_avg"]["f1-score"],
                "roc_auc": test["roc_auc"],
                "per_class_recall": {c: v["recall"] for c, v in test["per_class"].items()},
            },
            "val": {"n": val["n"], "accuracy": val["accuracy"], "roc_auc": val["roc_auc"]},
            "epochs_run": training["epochs_run"],
            "train_wall_seconds": round(train_wall, 1),
            "train_images_per_second": training["train_images_per_second"],
            "predict_images_per_second": round(predict_ips, 1),
        },
    )


if __name__ == "__main__":
    main()
