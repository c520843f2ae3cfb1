"""What things cost on this machine (timings only: no figure here judges a model):

- `speed train`: training/inference images/s for each CPU optimisation, on covid19-codecademy/train at 224 px;
  steady state = images / seconds of the epochs after the first. results/train_speed.json (rows of models not rerun
  are kept).
- `speed compile`: does torch.compile speed up training on this CPU? One training step (AdamW, batch 32, 224 px,
  channels_last), eager against torch.compile (inductor), on random tensors: compile time and steady-state images/s.
  results/compile_speed.json.
- `speed models`: each registered model's parameters, training images/s (one AdamW step on a batch of 32 random
  224 px images, eager, channels_last: the compile step) and prediction images/s (batches of 32 through cxr's own
  predict path). Random tensors cost what films cost, so no dataset is read. results/model_zoo.json.
- `speed predict`: the two inference backends (PyTorch, ONNX Runtime) on CPU, images/s of the model call alone.
  Real X-rays are decoded once beforehand (the same for both backends); each timing runs `Bundle.probabilities`
  (normalise + network + softmax) on batches of 1 and 32 for about --seconds, after a warm-up, with each intra-op
  thread count in --threads (PyTorch's and ONNX Runtime's pools alike: on a CPU shared with other jobs, fewer threads
  than cores can be much faster, because idle pool threads spin). Weights are random: speed does not depend on their
  values. The load average is recorded; compare backends within one run, not across runs. results/predict_backends.json.
- `speed stress`: how long the full `cxr stress` battery takes on Kermany's 624 test films with smallnet at 224 px,
  per backend. An untrained smallnet stands in (timing does not depend on the weights; its figures are not
  reported). Run it on a quiet machine: results/stress_speed.json records the load average before and after.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import dataset_path, machine, read_results, save_results, write_result

TRAIN_VARIANTS = {
    "baseline (fp32, contiguous, 0 workers)": dict(channels_last=False, num_workers=0, precision="32"),
    "+ channels_last": dict(channels_last=True, num_workers=0, precision="32"),
    "+ 1 loader worker": dict(channels_last=True, num_workers=1, precision="32"),
    "+ bf16 autocast": dict(channels_last=True, num_workers=1, precision="bf16-mixed"),
}
CLASSES = ["Covid", "Normal", "Viral Pneumonia"]  # a 3-class head, as codecademy's


def _decode_speed(data: Path, cache_dir: Path) -> dict:
    from cxr.data.cache import decode_cached
    from cxr.data.folders import scan_class_folders

    paths = scan_class_folders(data).splits["train"].paths
    t0 = time.perf_counter()
    decode_cached(paths, 224, cache_dir)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    decode_cached(paths, 224, cache_dir)
    warm = time.perf_counter() - t0
    return {
        "images": len(paths),
        "decode_images_per_second": round(len(paths) / cold, 1),
        "cached_images_per_second": round(len(paths) / warm, 1),
    }


def predict_speed(model_name: str, batch: int = 32, reps: int = 5) -> float:
    from cxr.inference.predict import predict_arrays
    from cxr.models import create_model

    model = create_model(model_name, 3).eval()
    x = np.random.default_rng(0).integers(0, 255, (batch, 224, 224), dtype=np.uint8)
    predict_arrays(model, x, 0.5, 0.25)
    t0 = time.perf_counter()
    for _ in range(reps):
        predict_arrays(model, x, 0.5, 0.25)
    return round(batch * reps / (time.perf_counter() - t0), 1)


def train_speed(models: list[str], epochs: int, command: str) -> None:
    import torch

    from cxr.config import build_config
    from cxr.data.folders import scan_class_folders
    from cxr.evaluation.history import read_epoch_seconds
    from cxr.training.train import train

    data = dataset_path("codecademy")
    tmp = Path(tempfile.mkdtemp(prefix="cxr-speed-"))
    results = read_results("train_speed")  # rows of models not rerun now are kept
    results.setdefault("train", {})
    results.setdefault("predict_images_per_second", {})
    results["decode"] = _decode_speed(data, tmp / "cache")
    for model in models:
        results["predict_images_per_second"][model] = predict_speed(model)
        for i, (name, opts) in enumerate(TRAIN_VARIANTS.items()):
            cfg = build_config(
                None,
                dict(
                    data=data, model=model, epochs=epochs, cache_dir=tmp / "cache", early_stopping_patience=100, **opts
                ),
            )
            run = tmp / f"{model}-{i}"
            train(cfg, run)
            secs = read_epoch_seconds(run)[1:]
            n_train = len(scan_class_folders(data).splits["train"]) * (1 - cfg.val_fraction)
            ips = round(n_train * len(secs) / sum(secs), 1)
            results["train"][f"{model} {name}"] = {"train_images_per_second": ips}
            print(model, name, ips, flush=True)
    results["bf16_native"] = bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)())
    results.pop("machine", None)
    results["commands"] = _commands_with(results, command)
    write_result("train_speed", results)
    shutil.rmtree(tmp, ignore_errors=True)


def train_step_speed(model_name: str, compiled: bool, steps: int) -> dict:
    import torch
    import torch.nn.functional as F

    from cxr.models import create_model

    torch.manual_seed(0)
    x = torch.randn(32, 1, 224, 224).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 3, (32,))
    net = create_model(model_name, 3).to(memory_format=torch.channels_last)
    forward = torch.compile(net) if compiled else net
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)

    def step() -> None:
        opt.zero_grad()
        F.cross_entropy(forward(x), y).backward()
        opt.step()

    t0 = time.perf_counter()
    step()  # compiles, when compiled
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return {
        "first_step_seconds": round(first, 1),
        "train_images_per_second": round(32 * steps / (time.perf_counter() - t0), 1),
    }


def compile_speed(models: list[str], steps: int, command: str) -> None:
    results = {}
    for model in models:
        results[model] = {
            mode: train_step_speed(model, mode == "torch.compile", steps) for mode in ("eager", "torch.compile")
        }
        print(model, results[model], flush=True)
    results["command"] = command
    write_result("compile_speed", results)


def _commands_with(results: dict, command: str) -> list[str]:
    """Every command that measured rows of a results file that keeps rows of earlier runs (popped), with this one."""
    earlier = results.pop("commands", []) + ([results.pop("command")] if "command" in results else [])
    return sorted(set(earlier) | {command})


def model_zoo(models: list[str] | None, steps: int, command: str) -> None:
    from cxr.models import available_models, count_parameters, create_model

    results = read_results("model_zoo")  # rows of models not measured now are kept, each with its machine
    measured_on = results.pop("machine", None)
    commands = _commands_with(results, command)
    for row in results.values():
        row.setdefault("machine", measured_on)
    for name in models or available_models():
        train = train_step_speed(name, compiled=False, steps=steps)
        results[name] = {
            "parameters": count_parameters(create_model(name, 3)),
            "train_images_per_second": train["train_images_per_second"],
            "predict_images_per_second": predict_speed(name, reps=max(1, steps)),
            "machine": machine(),
        }
        print(name, results[name], flush=True)
    results["commands"] = commands
    save_results("model_zoo", results)


def _images_per_second(bundle, images: np.ndarray, batch: int, seconds: float) -> dict:
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


def predict_backends(
    models: list[str], size: int, batches: list[int], seconds: float, threads: list[int], command: str
) -> None:
    import torch

    from cxr.data.images import find_images, load_grayscale
    from cxr.inference.bundle import Bundle, BundleMeta, save_bundle
    from cxr.inference.onnx_export import ONNX_FILE, OnnxPredictor, export_onnx
    from cxr.models import create_model

    files = find_images([dataset_path("codecademy") / "test"])[:64]
    images = np.stack([load_grayscale(p, size) for p in files])
    results: dict = {}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        for name in models:
            run = Path(tmp) / name
            run.mkdir()
            torch.manual_seed(0)
            save_bundle(run, create_model(name, len(CLASSES)), BundleMeta(name, CLASSES, size, 0.5, 0.25))
            export = export_onnx(run)
            results[name] = {"export_seconds": export.seconds, "parity_max_abs_diff": export.max_abs_diff}
            for n_threads in threads:
                torch.set_num_threads(n_threads)
                for backend in ("torch", "onnx"):
                    bundle = Bundle.load(run, backend=backend)
                    if backend == "onnx":
                        bundle.onnx = OnnxPredictor(
                            run / ONNX_FILE, bundle.meta.mean, bundle.meta.std, threads=n_threads
                        )
                    for batch in batches:
                        r = _images_per_second(bundle, images, batch, seconds)
                        results[name][f"{backend}_threads{n_threads}_batch{batch}"] = r
                        print(name, backend, f"threads {n_threads} batch {batch}:", r, flush=True)
                for batch in batches:
                    key = f"threads{n_threads}_batch{batch}"
                    t, o = (results[name][f"{b}_{key}"]["images_per_s"] for b in ("torch", "onnx"))
                    results[name][f"onnx_speedup_{key}"] = round(o / t, 2)
    write_result(
        "predict_backends",
        {
            "command": command,
            "image_size": size,
            "inputs": f"{len(images)} real X-rays from covid19-codecademy/test, decoded beforehand",
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "results": results,
        },
    )


def stress_speed(backends: list[str], command: str) -> None:
    import torch

    from cxr.evaluation.stress import run_stress
    from cxr.inference.bundle import BundleMeta, save_bundle
    from cxr.inference.onnx_export import export_onnx
    from cxr.models import create_model

    data = dataset_path("kermany")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        run.mkdir()
        torch.manual_seed(0)
        meta = BundleMeta("smallnet", ["NORMAL", "PNEUMONIA"], 224, 0.5, 0.25)
        save_bundle(run, create_model("smallnet", 2).eval(), meta)
        (run / "config.yaml").write_text(f"data: {data}\n")
        if "onnx" in backends:
            export_onnx(run)
        for backend in backends:
            before = os.getloadavg()
            t0 = time.perf_counter()
            section = run_stress(run, "test", backend=backend)
            results[backend] = {
                "films": section["n"],
                "conditions": len(section["conditions"]) + 1,
                "seconds": round(time.perf_counter() - t0, 1),
                "load_average_before": [round(x, 2) for x in before],
                "load_average_after": [round(x, 2) for x in os.getloadavg()],
            }
            print(backend, results[backend], flush=True)
    out = {
        "command": command,
        "model": "smallnet @ 224 px (untrained: timing only)",
        "data": "chest-xray-pneumonia test (624 films)",
        "results": results,
        "machine": machine(),
    }
    save_results("stress_speed", out)
    print(json.dumps(out, indent=2))
