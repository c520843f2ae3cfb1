"""Training/inference images/s on this machine for each CPU optimisation, on covid19-codecademy/train at 224 px.

Usage: python benchmarks/train_speed.py [--models smallnet resnet18] [--epochs 3]
Writes benchmarks/results/train_speed.json. Steady-state speed = images / seconds of the epochs after the first.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import RESULTS, SHARED_DATA, write_result

from cxr.config import build_config
from cxr.data.cache import decode_cached
from cxr.data.folders import scan_class_folders
from cxr.evaluation.history import read_epoch_seconds
from cxr.inference.predict import predict_arrays
from cxr.models import create_model
from cxr.training.train import train

DATA = SHARED_DATA / "covid19-codecademy"
VARIANTS = {
    "baseline (fp32, contiguous, 0 workers)": dict(channels_last=False, num_workers=0, precision="32"),
    "+ channels_last": dict(channels_last=True, num_workers=0, precision="32"),
    "+ 1 loader worker": dict(channels_last=True, num_workers=1, precision="32"),
    "+ bf16 autocast": dict(channels_last=True, num_workers=1, precision="bf16-mixed"),
}


def decode_speed(cache_dir: Path) -> dict:
    paths = scan_class_folders(DATA).splits["train"].paths
    t0 = time.perf_counter()
    decode_cached(paths, 224, cache_dir)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    decode_cached(paths, 224, cache_dir)
    warm = time.perf_counter() - t0
    return {"images": len(paths), "decode_images_per_second": round(len(paths) / cold, 1),
            "cached_images_per_second": round(len(paths) / warm, 1)}  # fmt: skip


def predict_speed(model_name: str, batch: int = 32, reps: int = 5) -> float:
    model = create_model(model_name, 3).eval()
    x = np.random.default_rng(0).integers(0, 255, (batch, 224, 224), dtype=np.uint8)
    predict_arrays(model, x, 0.5, 0.25)
    t0 = time.perf_counter()
    for _ in range(reps):
        predict_arrays(model, x, 0.5, 0.25)
    return round(batch * reps / (time.perf_counter() - t0), 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["smallnet", "resnet18"])
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cxr-speed-"))
    previous = RESULTS / "train_speed.json"  # rows of models not rerun now are kept
    results: dict = json.loads(previous.read_text()) if previous.is_file() else {}
    results.setdefault("train", {})
    results.setdefault("predict_images_per_second", {})
    results["decode"] = decode_speed(tmp / "cache")
    for model in args.models:
        results["predict_images_per_second"][model] = predict_speed(model)
        for i, (name, opts) in enumerate(VARIANTS.items()):
            cfg = build_config(None, dict(data=DATA, model=model, epochs=args.epochs, cache_dir=tmp / "cache",
                                          early_stopping_patience=100, **opts))  # fmt: skip
            run = tmp / f"{model}-{i}"
            train(cfg, run)
            secs = read_epoch_seconds(run)[1:]
            n_train = len(scan_class_folders(DATA).splits["train"]) * (1 - cfg.val_fraction)
            ips = round(n_train * len(secs) / sum(secs), 1)
            results["train"][f"{model} {name}"] = {"train_images_per_second": ips}
            print(model, name, ips, flush=True)
    results["bf16_native"] = bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)())
    results.pop("machine", None)
    command = f"python benchmarks/train_speed.py --models {' '.join(args.models)} --epochs {args.epochs}"
    earlier = results.pop("commands", []) + ([results.pop("command")] if "command" in results else [])
    results["commands"] = sorted(set(earlier) | {command})
    write_result("train_speed", results)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
