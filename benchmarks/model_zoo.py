"""What each registered model costs on this machine: parameters, training and prediction images/s at 224 px.

Usage: python benchmarks/model_zoo.py [--models smallnet resnet18 ...] [--steps 3]
Writes benchmarks/results/model_zoo.json. Training: one AdamW step on a batch of 32 random 224 px images in eager
mode with channels_last (compile_speed.py's step); prediction: batches of 32 through cxr's own predict path
(train_speed.py's). Random tensors cost what films cost, so no dataset is read.
"""

from __future__ import annotations

import argparse

from common import write_result
from compile_speed import measure as train_step_speed
from train_speed import predict_speed

from cxr.models import available_models, count_parameters, create_model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=available_models())
    ap.add_argument("--steps", type=int, default=3)
    args = ap.parse_args()
    results = {}
    for name in args.models:
        train = train_step_speed(name, compiled=False, steps=args.steps)
        results[name] = {
            "parameters": count_parameters(create_model(name, 3)),
            "train_images_per_second": train["train_images_per_second"],
            "predict_images_per_second": predict_speed(name, reps=max(1, args.steps)),
        }
        print(name, results[name], flush=True)
    results["command"] = f"python benchmarks/model_zoo.py --models {' '.join(args.models)} --steps {args.steps}"
    write_result("model_zoo", results)


if __name__ == "__main__":
    main()
