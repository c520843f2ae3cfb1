"""`cxr runs DIR...`: a leaderboard of finished runs, read from each run's metrics.json and config.yaml.

Figures are only comparable on the same images: rows are grouped by the data a run was trained on and the size of
the split ranked on (a test split of another size is another test set), and ranked within their group only.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from rich.table import Table

from cxr.errors import CxrError
from cxr.evaluation.tables import with_ci
from cxr.inference.bundle import BUNDLE_FILE
from cxr.rundir import FOLDS, METRICS, NESTED_RUNS, PREVIOUS_RUN, RunDir

NESTED = {*NESTED_RUNS, FOLDS, PREVIOUS_RUN}  # runs inside a run: listed through their parent
SORT_KEYS = ("val.accuracy", "val.auc", "test.accuracy", "test.auc", "seconds", "date")
FORMATS = ("table", "csv", "markdown", "json")
COLUMNS = (
    "group",
    "rank",
    "run",
    "model",
    "data",
    "image_size",
    "epochs",
    "precision",
    "val_accuracy",
    "val_auc",
    "test_accuracy",
    "test_auc",
    "seconds",
    "date",
    "note",
)


def _find_runs(folder: Path) -> list[Path]:
    found = [p.parent for p in folder.rglob(BUNDLE_FILE) if RunDir(p.parent).metrics.is_file()]
    return sorted(r for r in found if not NESTED & set(r.relative_to(folder).parts))


def _figure(section: dict | None, key: str) -> dict[str, Any] | None:
    """{value, ci, n} of `accuracy` or `roc_auc` in a metrics.json split section."""
    if not section or section.get(key) is None:
        return None
    return {"value": float(section[key]), "ci": (section.get("ci") or {}).get(key), "n": section.get("n")}


def read_run(run: Path, label: str) -> dict[str, Any]:
    files = RunDir(run)
    metrics = files.read_metrics()
    config = yaml.safe_load(files.config.read_text()) if files.config.is_file() else {}
    training = metrics.get("training") or {}
    data = config.get("data")
    other_splits = sorted(k for k in metrics if "@" in k or k.endswith("-tta"))
    row: dict[str, Any] = {
        "run": label,
        "path": str(run),
        "model": config.get("model") if config.get("ensemble", 1) == 1 else f"ensemble of {config['ensemble']}",
        "data": Path(data).name if data else "-",
        "data_path": str(Path(data).resolve()) if data else None,
        "image_size": config.get("image_size"),
        "epochs": training.get("epochs_run"),
        "precision": training.get("precision"),
        "seconds": training.get("wall_seconds"),
        "date": datetime.fromtimestamp((run / BUNDLE_FILE).stat().st_mtime, UTC).strftime("%Y-%m-%d %H:%M"),
        "note": "also evaluated on " + ", ".join(other_splits) if other_splits else "",
    }
    for split in ("val", "test"):
        for name, key in (("accuracy", "accuracy"), ("auc", "roc_auc")):
            row[f"{split}.{name}"] = _figure(metrics.get(split), key)
    return row


def collect_runs(folders: list[Path], sort: str = "test.accuracy") -> list[dict[str, Any]]:
    """Every finished run under `folders`, grouped by comparability and ranked by `sort` within each group."""
    if sort not in SORT_KEYS:
        raise CxrError(f"--sort {sort!r}: choose one of {', '.join(SORT_KEYS)}")
    rows = []
    for folder in folders:
        if not folder.is_dir():
            raise CxrError(f"{folder} is not a folder; pass folders that hold run directories from `cxr train`")
        runs = _find_runs(folder)
        if not runs:
            raise CxrError(
                f"{folder} holds no finished run (a folder with {BUNDLE_FILE} and {METRICS}); pass the "
                "folder `cxr train --out` wrote into, or its parent"
            )
        rows += [
            read_run(r, str(Path(folder.name) / r.relative_to(folder)) if r != folder else folder.name) for r in runs
        ]
    return rank(rows, sort)


def rank(rows: list[dict[str, Any]], sort: str) -> list[dict[str, Any]]:
    """Group rows that can be compared (same data; same size of the ranked split), rank each group on its own."""
    split = sort.split(".")[0] if "." in sort else None
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        figure = row.get(sort) if split else None
        groups.setdefault((row["data_path"], figure["n"] if figure else None), []).append(row)
    ordered = []
    for g, key in enumerate(sorted(groups, key=lambda k: k[1] is None)):  # in the order found; unranked last
        members = groups[key]
        members.sort(key=lambda r: _sort_value(r, sort), reverse=sort not in ("seconds",))
        for i, row in enumerate(members):
            row["group"] = chr(ord("A") + g % 26) + (str(g // 26) if g >= 26 else "")
            row["rank"] = i + 1 if _sort_value(row, sort) != float("-inf") else None
            if split and row.get(sort) is None:
                row["note"] = "; ".join(x for x in (f"not evaluated on {split}", row["note"]) if x)
        ordered += members
    return ordered


def _sort_value(row: dict[str, Any], sort: str) -> Any:
    value = row.get(sort)
    if isinstance(value, dict):
        return value["value"]
    if value is None:
        return float("-inf")
    return value if sort != "seconds" else -float(value)  # fastest first


def _cells(row: dict[str, Any], sep: str = " ") -> dict[str, str]:
    def fig(key):
        f = row.get(key)
        return with_ci(f["value"], f["ci"], sep=sep) if f else "-"

    out = {k: "-" if row.get(k) is None else str(row[k]) for k in COLUMNS}
    out.update({k.replace(".", "_"): fig(k) for k in ("val.accuracy", "val.auc", "test.accuracy", "test.auc")})
    return out


def table(rows: list[dict[str, Any]], sort: str) -> Table:
    t = Table(*COLUMNS, title=f"runs ranked by {sort} within each group (same data, same split size)")
    for row in rows:
        cells = _cells(row, sep="\n")
        t.add_row(*[cells[c] for c in COLUMNS])
    return t


def render(rows: list[dict[str, Any]], fmt: str) -> str | None:
    """csv / markdown / json text; None for `table` (the CLI prints a rich table)."""
    if fmt not in FORMATS:
        raise CxrError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if fmt == "table":
        return None
    if fmt == "json":
        return json.dumps(rows, indent=2)
    cells = [_cells(r) for r in rows]
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(cells)
        return buf.getvalue().rstrip("\n")
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(c[k] for k in COLUMNS) + " |" for c in cells]
    return "\n".join(lines)
