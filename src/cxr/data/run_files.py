"""Which films a finished run's split holds: train/val as the run recorded them (splits.csv), test from its data or
another dataset; and the key its figures are filed under (`split`, or `split@<dataset>` for another site)."""

from __future__ import annotations

from pathlib import Path

from cxr.data.folders import LabeledFiles
from cxr.data.manifest import load_dataset
from cxr.data.splits import read_splits_csv
from cxr.errors import CxrError
from cxr.rundir import SELECTION, SPLITS, RunDir


def split_files(run_dir: Path, split: str, classes: list[str], data: Path | None = None) -> LabeledFiles:
    """Files of `split`: train/val from the run's splits.csv (as trained), test from the data folder or manifest."""
    if split in ("train", "val") and data is None:
        splits_csv = run_dir / SPLITS
        if not splits_csv.is_file():
            raise CxrError(f"{run_dir} has no {SPLITS}; pass --data FOLDER to evaluate on a folder's {split}/")
        splits = read_splits_csv(splits_csv, classes)
        if split not in splits:
            refit = (run_dir / SELECTION).is_dir() and split == "val"  # cxr.training.refit's first run
            hint = f" (a refit: its model trained on val; {run_dir / SELECTION} is the validated run)"
            raise CxrError(f"{splits_csv} has no {split!r} split{hint if refit else ''}")
        return splits[split]
    root = data if data is not None else RunDir(run_dir).data_path()
    ds = load_dataset(root, require_train=False)  # class folders or a CSV manifest (a site's: calibration/test rows)
    if split not in ds.splits:
        raise CxrError(f"{root} has no {split} split; pass --data with {split}/<class>/ or a manifest with such rows")
    if ds.classes == classes:
        return ds.splits[split]
    # another site's folders may spell a class otherwise (COVID / Covid): match names ignoring case, in model order
    model_order = [c.casefold() for c in classes]
    if sorted(c.casefold() for c in ds.classes) != sorted(model_order):
        raise CxrError(f"{root} classes {ds.classes} differ from the model's classes {classes}")
    to_model = [model_order.index(c.casefold()) for c in ds.classes]
    files = ds.splits[split]
    return LabeledFiles(list(files.paths), [to_model[y] for y in files.labels])


def evaluation_key(run_dir: Path, split: str, data: Path | None = None, tta: bool = False) -> str:
    """Where results go: `split` for the run's own data, `split@<name>` for another dataset, so evaluating on
    another site never overwrites the run's own figures (metrics.json section, plots, predictions CSV); `-tta` is
    appended for test-time augmentation, which leaves the plain figures in place too."""
    suffix = "-tta" if tta else ""
    if data is None:
        return split + suffix
    try:
        own = RunDir(run_dir).data_path()
    except CxrError:  # a bare model file has no config: any data is another dataset
        own = None
    if own is not None and Path(own).resolve() == Path(data).resolve():
        return split + suffix
    return f"{split}@{Path(data).stem}{suffix}"
