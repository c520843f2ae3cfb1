"""cxr: chest X-ray classification from a folder of images to a served model.

The public API is small and loads lazily (`import cxr` stays light; torch loads on first use)::

    import cxr
    cfg = cxr.TrainConfig(data="my_data", epochs=10)
    run = cxr.train(cfg, "runs/mine")
    figures = cxr.evaluate(run, split="test")
    preds = cxr.load(run).predict(["a.png", "folder/"])
    net = cxr.create_model("efficientnet-lite0", num_classes=3)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from cxr.version import __version__

if TYPE_CHECKING:
    from cxr.config import TrainConfig
    from cxr.inference.bundle import Bundle
    from cxr.models import create_model


def load(run_dir: str | Path) -> Bundle:
    """Load a finished run (model bundle) for prediction.

    Args:
        run_dir: the run directory `cxr train` wrote (or its model.pt).

    Returns:
        The bundle: `.predict(paths)`, `.probabilities(images)`, `.classes`, `.meta`.
    """
    from cxr.inference.bundle import Bundle

    return Bundle.load(run_dir)


def train(cfg: TrainConfig, out: str | Path, resume: bool = False, overwrite: bool = False) -> Path:
    """Train a config into a run directory (the model bundle), as `cxr train` does.

    Args:
        cfg: the training config (`TrainConfig(...)`, or `cxr.config.build_config(yaml_or_recipe, overrides)`).
        out: the run directory to write.
        resume: continue an unfinished run in `out` from its last checkpoint.
        overwrite: replace a finished run in `out` (kept aside until the new one finishes).

    Returns:
        The run directory.
    """
    from cxr.training.train import train as train_run

    return train_run(cfg, out, resume=resume, overwrite=overwrite)


def evaluate(run_dir: str | Path, split: str = "test", data: str | Path | None = None, **options: Any) -> dict:
    """Evaluate a finished run on a split, as `cxr evaluate` does (writes metrics.json, plots, predictions CSV).

    Args:
        run_dir: the run directory.
        split: test, val or train.
        data: another dataset (folder or manifest) with the same classes, instead of the run's own.
        **options: `cxr.evaluation.evaluate.evaluate_run`'s other keywords (n_bootstrap, batch_size, tta...).

    Returns:
        The split's figures (accuracy, AUC, intervals, calibration, operating points...).
    """
    from cxr.evaluation.evaluate import evaluate_run

    return evaluate_run(run_dir, split, Path(data) if data is not None else None, **options)


_LAZY = {
    "TrainConfig": "cxr.config",
    "Bundle": "cxr.inference.bundle",
    "create_model": "cxr.models",
}  # cxr.models registers every model


def __getattr__(name: str) -> Any:
    """`cxr.TrainConfig`, `cxr.Bundle` and `cxr.create_model` import their module on first use."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cxr' has no attribute {name!r}")


__all__ = ["Bundle", "TrainConfig", "__version__", "create_model", "evaluate", "load", "train"]
