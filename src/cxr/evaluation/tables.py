"""Terminal summaries (rich) of what evaluate, calibrate and compare computed; the CLI prints them."""

from __future__ import annotations

from typing import Any

from rich.table import Table


def with_ci(value: float | None, ci: list[float] | None, digits: int = 3, sep: str = " ") -> str:
    """'0.912 [0.889, 0.934]'; in table cells sep="\n" puts the interval under the value."""
    if value is None:
        return "-"
    text = f"{value:.{digits}f}"
    return text if not ci else f"{text}{sep}[{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def headline(m: dict[str, Any]) -> str:
    """One line of the main figures with their 95 % intervals."""
    ci = m.get("ci", {})
    keys = [
        ("accuracy", "accuracy"),
        ("balanced_accuracy", "balanced accuracy"),
        ("roc_auc", "ROC AUC"),
        ("sensitivity", "sensitivity"),
        ("specificity", "specificity"),
    ]
    parts = [f"{label} {with_ci(m[k], ci.get(k))}" for k, label in keys if m.get(k) is not None]
    suffix = "   (95 % CI, stratified bootstrap)" if ci else ""
    return "   ".join(parts) + suffix


def operating_points(m: dict[str, Any]) -> Table | None:
    rows = m.get("operating_points")
    if not rows:
        return None
    table = Table("threshold", "value", "sensitivity", "specificity", "PPV", "NPV", title="operating points")
    for r in rows:
        ci = r.get("ci", {})
        table.add_row(
            r["name"],
            f"{r['threshold']:.4f}",
            *[with_ci(r[k], ci.get(k), sep="\n") for k in ("sensitivity", "specificity", "ppv", "npv")],
        )
    return table


def calibration(cal: dict[str, Any] | None) -> str:
    if not cal:
        return ""
    ci = cal.get("ci", {})
    return (
        f"calibration: temperature {cal['temperature']:.3f}   ECE {with_ci(cal['ece_before'], ci.get('ece_before'))} "
        f"before, {with_ci(cal['ece_after'], ci.get('ece_after'))} after"
    )


def agreement(ag: dict[str, Any] | None) -> list[Table]:
    if not ag:
        return []
    pairs = Table("rater", "rater", "images", "Cohen's kappa", title=f"agreement ({ag['matched']} images matched)")
    for p in ag["pairs"]:
        pairs.add_row(p["a"], p["b"], str(p["n"]), with_ci(p["kappa"], p["ci"], sep="\n"))
    truth = Table("rater", "images", "kappa vs labels", "accuracy", title="raters against the folder labels")
    for r in ag["vs_truth"]:
        truth.add_row(
            r["rater"],
            str(r["n"]),
            with_ci(r["kappa"], r["ci"]["kappa"], sep="\n"),
            with_ci(r["accuracy"], r["ci"]["accuracy"], sep="\n"),
        )
    return [pairs, truth]


def comparison(result: dict[str, Any]) -> Table:
    names = list(result["metrics"])
    table = Table("figure", *names, "difference (A - B)", "p", title=f"{result['split']} (n={result['n']})")
    diffs = result.get("differences", {})
    for key in ("accuracy", "balanced_accuracy", "roc_auc", "sensitivity", "specificity"):
        ms = [result["metrics"][n] for n in names]
        if any(m.get(key) is None for m in ms):
            continue
        d = diffs.get(key, {})
        if key == "roc_auc" and "auc_test" in result:
            d = result["auc_test"]
        delta = ms[0][key] - ms[1][key]
        p = d.get("p_value")
        table.add_row(
            "ROC AUC" if key == "roc_auc" else key.replace("_", " "),
            *[with_ci(m[key], m.get("ci", {}).get(key), sep="\n") for m in ms],
            with_ci(delta, d.get("ci"), sep="\n"),
            "-" if p is None else f"{p:.3g}",
        )
    return table
