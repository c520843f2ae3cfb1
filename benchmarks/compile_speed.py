"""Does torch.compile speed up training on this CPU? One training step (AdamW, batch 32, 224 px, channels_last),
eager against torch.compile (inductor), on random tensors: compile time and steady-state images/s.

Usage: python benchmarks/compile_speed.py [--models smallnet resnet18] [--steps 8]
Writes benchmarks/results/compile_speed.json.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from common import write_result

from cxr.models import create_model


def measure(model_name: str, compiled: bool, steps: int) -> dict:
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
    return {"first_step_seconds": round(first, 1),
            "train_images_per_second": round(32 * steps / (time.perf_counter() - t0), 1)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["smallnet", "resnet18"])
    ap.add_argument("--steps", type=int, default=8)
    args = ap.parse_args()
    results = {}
    for model in args.models:
        results[model] = {mode: measure(model, mode == "torch.compile", args.steps) for mode in ("eager", "torch.compile")}
        print(model, results[model], flush=True)
    results["command"] = f"python benchmarks/compile_speed.py --models {' '.join(args.models)} --steps {args.steps}"
    write_result("compile_speed", results)


if __name__ == "__main__":
    main()
