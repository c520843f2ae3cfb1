"""Inference speed of the two backends (PyTorch, ONNX Runtime) on CPU: images/s for the model call alone.

Usage: python benchmarks/predict_backends.py [--models smallnet resnet18] [--size 224] [--seconds 10] [--threads 1 2]
       -> benchmarks/results/predict_backends.json

Real X-rays are decoded once beforehand (decoding is the same for both backends); each timing runs
`Bundle.probabilities` (normalise + network + softmax) on batches of 1 and 32 for about --seconds, after a warm-up,
with each intra-op thread count in --threads (PyTorch's and ONNX Runtime's own pools alike: on a CPU shared with
other jobs, fewer threads than cores can be much faster, because idle pool threads spin).
Weights are random: speed does not depend on their values. The load average is recorded because the CPU may be
shared with other jobs; compare backends within one run, not across runs.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import SHARED_DATA, write_result

from cxr.data.images import find_images, load_grayscale
from cxr.inference.bundle import Bundle, BundleMeta, save_bundle
from cxr.inference.onnx_export import ONNX_FILE, OnnxPredictor, export_onnx
from cxr.models import create_model

CLASSES = ["Covid", "Normal", "Viral Pneumonia"]


def images_per_second(bundle: Bundle, images: np.ndarray, batch: int, seconds: float) -> dict:
    batches = [images[i : i + batch] for i in range(0, len(images) - batch + 1, batch)] or [images[:batch]]
    bundle.probabilities(batches[0])  # warm-up: first-call allocations, ONNX Runtime's graph preparation
    done, calls, t0 = 0, 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or calls < 3:
        x = batches[calls % len(batches)]
        bundle.probabilities(x)
        done += len(x)
        calls += 1
    elapsed = time.perf_counter() - t0
    return {"images_per_s": round(done / elapsed, 2), "ms_per_batch": round(1000 * elapsed / calls, 2), "calls": calls}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["smallnet", "resnet18"])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, nargs="+", default=sorted({1, os.cpu_count() or 1}))
    args = parser.parse_args()

    files = find_images([SHARED_DATA / "covid19-codecademy" / "test"])[:64]
    images = np.stack([load_grayscale(p, args.size) for p in files])
    results: dict = {}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            run = Path(tmp) / name
            run.mkdir()
            torch.manual_seed(0)
            save_bundle(run, create_model(name, len(CLASSES)), BundleMeta(name, CLASSES, args.size, 0.5, 0.25))
            export = export_onnx(run)
            results[name] = {"export_seconds": export.seconds, "parity_max_abs_diff": export.max_abs_diff}
            for threads in args.threads:
                torch.set_num_threads(threads)
                for backend in ("torch", "onnx"):
                    bundle = Bundle.load(run, backend=backend)
                    if backend == "onnx":
                        bundle.onnx = OnnxPredictor(run / ONNX_FILE, bundle.meta.mean, bundle.meta.std, threads=threads)
                    for batch in args.batches:
                        r = images_per_second(bundle, images, batch, args.seconds)
                        results[name][f"{backend}_threads{threads}_batch{batch}"] = r
                        print(name, backend, f"threads {threads} batch {batch}:", r, flush=True)
                for batch in args.batches:
                    key = f"threads{threads}_batch{batch}"
                    t, o = (results[name][f"{b}_{key}"]["images_per_s"] for b in ("torch", "onnx"))
                    results[name][f"onnx_speedup_{key}"] = round(o / t, 2)
    write_result(
        "predict_backends",
        {
            "command": "python benchmarks/predict_backends.py " + " ".join(
                [f"--models {' '.join(args.models)}", f"--size {args.size}", f"--seconds {args.seconds}",
                 f"--threads {' '.join(map(str, args.threads))}"]),  # fmt: skip
            "image_size": args.size,
            "inputs": f"{len(images)} real X-rays from covid19-codecademy/test, decoded beforehand",
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
