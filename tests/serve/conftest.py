"""A served model for the API and browser tests: fitted in seconds on real X-rays (see spread_bundles)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import CODECADEMY, SHARED_DATA
from tests.inference.spread_bundles import make_bundle


@pytest.fixture(scope="session")
def served_run(tmp_path_factory):
    if not CODECADEMY.is_dir():
        pytest.skip(f"needs the shared datasets at {SHARED_DATA}")
    run = make_bundle(tmp_path_factory.mktemp("serve") / "demo", image_size=64, guard=True)
    metrics = {
        "training": {"epochs_run": 3, "best_score": 0.42, "skipped_unreadable": []},
        "test": {"n": 66, "accuracy": 0.75, "roc_auc": 0.9, "per_class": {"Covid": {"recall": 1.0}}},
    }
    (run / "metrics.json").write_text(json.dumps(metrics))
    return run


@pytest.fixture(scope="session")
def xray():
    """A real chest X-ray: a grayscale JPEG from the Kermany test split."""
    path = SHARED_DATA / "chest-xray-pneumonia" / "test" / "NORMAL" / "IM-0001-0001.jpeg"
    if not path.is_file():
        pytest.skip(f"needs the shared datasets at {SHARED_DATA}")
    return path
