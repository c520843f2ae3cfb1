"""How long the full `cxr stress` battery takes on Kermany's 624 test films with smallnet at 224 px, per backend.

    python benchmarks/stress_speed.py [--backends onnx torch]

The timing does not depend on the weights, so an untrained smallnet stands in for a trained one (its figures are
not reported). Run it on a quiet machine: results/stress_speed.json records the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, SHARED_DATA, machine  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", nargs="+", default=["onnx", "torch"])
    args = parser.parse_args()

    import torch

    from cxr.evaluation.stress import run_stress
    from cxr.inference.bundle import BundleMeta, save_bundle
    from cxr.inference.onnx_export import export_onnx
    from cxr.models import create_model

    data = SHARED_DATA / "chest-xray-pneumonia"
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        run.mkdir()
        torch.manual_seed(0)
        save_bundle(run, create_model("smallnet", 2).eval(), BundleMeta("smallnet", ["NORMAL", "PNEUMONIA"], 224, 0.5, 0.25))
        (run / "config.yaml").write_text(f"data: {data}\n")
        if "onnx" in args.backends:
            export_onnx(run)
        for backend in args.backends:
            before = os.getloadavg()
            t0 = time.perf_counter()
            section = run_stress(run, "test", backend=backend)
            results[backend] = {
                "films": section["n"], "conditions": len(section["conditions"]) + 1,
                "seconds": round(time.perf_counter() - t0, 1),
                "load_average_before": [round(x, 2) for x in before],
                "load_average_after": [round(x, 2) for x in os.getloadavg()],
            }  # fmt: skip
            print(backend, results[backend], flush=True)
    out = {"command": "python benchmarks/stress_speed.py", "model": "smallnet @ 224 px (untrained: timing only)",
           "data": "chest-xray-pneumonia test (624 films)", "results": results, "machine": machine()}  # fmt: skip
    (RESULTS / "stress_speed.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
