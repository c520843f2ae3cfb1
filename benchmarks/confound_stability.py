"""Is the confound finder's verdict a property of the dataset or of one draw? The audit of each dataset's train split
(`cxr data audit --confounds`: 2,000 films sampled, PCA, KMeans with k = 2-10) repeated with other seeds: another
sample of films, another PCA and KMeans start. Per seed: the verdicts (confound suspect or class cluster), the
flagged class, its cluster's size, purity and gap. results/confound_stability.json.

The rule is the finder's own (cxr.explain.confounds); nothing is tuned here. Features are cached per film, so films
drawn again cost nothing.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from benchmarks.common import dataset_path, write_result
from cxr.explain.confounds import confound_audit

DATASETS = ("radiography", "kermany", "codecademy", "pneumoniamnist")


def confound_stability(datasets: list[str], seeds: list[int], command: str) -> None:
    rows = []
    for name in datasets:
        for seed in seeds:
            t0 = time.perf_counter()
            with tempfile.TemporaryDirectory() as out:
                section = confound_audit(dataset_path(name), Path(out), seed=seed)
            rows.append(
                {
                    "dataset": name,
                    "seed": seed,
                    "films": section["settings"]["films"],
                    "suspects": section["suspects"],
                    "findings": [
                        {k: row[k] for k in ("verdict", "top_class", "k", "films", "purity", "coverage", "gap_sd")}
                        for row in section["findings"]
                    ],
                    "seconds": round(time.perf_counter() - t0, 1),
                }
            )
            print(rows[-1])
    write_result("confound_stability", {"command": command, "seeds": seeds, "runs": rows})
