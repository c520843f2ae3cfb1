"""python -m benchmarks SUB-COMMAND: one runner for every benchmark, run from the repository root (the paths in
benchmarks/datasets.yaml and the spaces are relative to it). Each sub-command writes benchmarks/results/*.json and
records the command that measured it; docs/benchmarks.md reads the figures.

The chain: `select` chooses a config on validation among a study's candidates (a `cxr sweep` over
benchmarks/spaces/STUDY.yaml), `run` trains the chosen recipe over seeds and reads its test split once, `table`
writes benchmarks/RESULTS.md from the results. The rest measure a chosen model further (other sites, the shift
battery, calibration on a site), the fold runs of a cross-validation, or speed and load.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from benchmarks.common import ROOT, datasets, studies


def _reuse(text: str) -> tuple[str, str]:
    trial, sep, run = text.partition("=")
    if not sep or not trial or not run:
        raise argparse.ArgumentTypeError(f"expected TRIAL=RUN (e.g. recipe-seed0=runs/bench-kermany), not {text!r}")
    return trial, run


def build_parser() -> argparse.ArgumentParser:
    from benchmarks.sites import ADAPTATION_PAIRS, STRESS_GUARD_BENCHMARKS, external_benchmarks

    names = list(datasets())
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = ap.add_subparsers(dest="command", required=True, metavar="SUB-COMMAND")

    p = sub.add_parser("list", help="the datasets and their selection studies (benchmarks/datasets.yaml)")

    p = sub.add_parser(
        "run",
        help="train each benchmark's recipe over seeds, test each run once, record it "
        "(results/NAME.json), rewrite RESULTS.md",
    )
    p.add_argument("benchmarks", nargs="+", choices=names, metavar="NAME", help=f"any of {', '.join(names)}")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds to run (default: 0)")
    p.add_argument("--reuse", type=Path, help="a finished run trained with the same config (one benchmark, one seed)")
    p.add_argument(
        "--publish",
        action="store_true",
        help="copy the model to the dataset's publish_weights (radiography: the shipped start)",
    )

    p = sub.add_parser("place", help="where a finished run's test accuracy falls among a benchmark's recorded runs")
    p.add_argument("benchmark", choices=names)
    p.add_argument("run", type=Path)

    sub.add_parser("table", help="rewrite benchmarks/RESULTS.md from results/<benchmark>.json (no training)")

    p = sub.add_parser(
        "select",
        help="choose among a study's candidates on validation: a cxr sweep over "
        "spaces/STUDY.yaml -> results/select_DATASET.json or robust_DATASET.json",
    )
    p.add_argument("study", choices=list(studies()))
    p.add_argument("candidates", nargs="*", help="candidates of the space to run (default: all)")
    p.add_argument("--seeds", type=int, nargs="+", help="seeds (replicates); default: the space's, else 0")
    p.add_argument(
        "--objective",
        choices=["val_accuracy", "val_stressed", "cv_accuracy"],
        help="default: the study's (datasets.yaml)",
    )
    p.add_argument("--folds", type=int, default=3, help="folds of cv_accuracy (default 3)")
    p.add_argument(
        "--reuse",
        type=_reuse,
        action="append",
        default=[],
        metavar="TRIAL=RUN",
        help="a finished run copied in as that trial (refused unless its config is the trial's)",
    )

    p = sub.add_parser(
        "cv",
        help="optimistic k-fold CV by hand (held-out fold = validation): earlier entries of "
        "results/cv_DATASET.json and the fold models cv-ensemble / cv-external read",
    )
    p.add_argument("study", choices=list(studies()))
    p.add_argument("candidates", nargs="+")
    p.add_argument("--folds", type=int, default=5)

    p = sub.add_parser("cv-ensemble", help="an ensemble's CV score from the `cv` fold predictions (no training)")
    p.add_argument("dataset", choices=names)
    p.add_argument("candidates", nargs="+")

    p = sub.add_parser("cv-external", help="the `cv` fold models on another site's films")
    p.add_argument("study", choices=list(studies()))
    p.add_argument("candidates", nargs="+")

    p = sub.add_parser("tta-cv", help="test-time augmentation judged on finished nested CVs' out-of-fold films")
    p.add_argument("cv_dirs", nargs="+", type=Path, metavar="CV_DIR")

    p = sub.add_parser("temperature-prior", help="the temperature prior's width judged out of fold")
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR", help="fold run folders holding splits.csv")

    config_of_help = (
        "DATASET (its recipe) or STUDY:CANDIDATE the run was trained as, checked against the run's "
        "config and recorded as config_of"
    )
    p = sub.add_parser("external", help="a chosen model on another site's test split -> results/external.json")
    p.add_argument("benchmark", choices=external_benchmarks())
    p.add_argument("run", type=Path, help="the chosen model's run directory")
    p.add_argument("--config-of", help=config_of_help)

    p = sub.add_parser(
        "stress-guard",
        help="a benchmark model under the shift battery, and its guard on other "
        "sites' films -> results/stress_guard.json",
    )
    p.add_argument("benchmark", choices=STRESS_GUARD_BENCHMARKS)
    p.add_argument("run", type=Path, help="the benchmark's trained run directory")
    p.add_argument("--backend", default="auto", help="auto | onnx | torch (stress only)")
    p.add_argument("--config-of", help=config_of_help)

    p = sub.add_parser("site-adaptation", help="`cxr site adapt` on another site: one half adapts, the other is scored")
    p.add_argument("pairs", nargs="*", metavar="PAIR", help=f"any of {', '.join(ADAPTATION_PAIRS)} (default: all)")

    p = sub.add_parser("site-calibration", help="site-calibrated figures beside zero-shot ones, over cuts of a site")
    p.add_argument("case", choices=["kermany", "pneumoniamnist", "codecademy->radiography"])
    p.add_argument("--run", type=Path, required=True, help="the trained run to calibrate")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--no-adapt", action="store_true", help="skip the AdaBN + calibration protocol")
    p.add_argument("--dedup", type=Path, help="codecademy->radiography: the `cxr data dedup` manifest")
    p.add_argument("--config-of", help=config_of_help)

    speed = sub.add_parser("speed", help="training, compile, model, prediction and stress-battery speed")
    kinds = speed.add_subparsers(dest="kind", required=True, metavar="KIND")
    p = kinds.add_parser("train", help="training images/s per CPU optimisation -> results/train_speed.json")
    p.add_argument("--models", nargs="+", default=["smallnet", "resnet18"])
    p.add_argument("--epochs", type=int, default=3)
    p = kinds.add_parser("compile", help="eager against torch.compile -> results/compile_speed.json")
    p.add_argument("--models", nargs="+", default=["smallnet", "resnet18"])
    p.add_argument("--steps", type=int, default=8)
    p = kinds.add_parser("models", help="every registered model's size and speed -> results/model_zoo.json")
    p.add_argument("--models", nargs="+", help="default: every registered model")
    p.add_argument("--steps", type=int, default=3)
    p = kinds.add_parser("predict", help="PyTorch against ONNX Runtime -> results/predict_backends.json")
    p.add_argument("--models", nargs="+", default=["smallnet", "resnet18"])
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--threads", type=int, nargs="+", default=None, help="default: 1 and the core count")
    p = kinds.add_parser("stress", help="the stress battery's time per backend -> results/stress_speed.json")
    p.add_argument("--backends", nargs="+", default=["onnx", "torch"])

    load = sub.add_parser("load", help="load tests of `cxr serve` and of the reading room")
    kinds = load.add_subparsers(dest="kind", required=True, metavar="KIND")
    p = kinds.add_parser("serve", help="N clients posting films to /v1/predict -> results/serve_load.json")
    p.add_argument("run", nargs="?", type=Path, help="run directory to serve (default: a demo smallnet)")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--image", type=Path, help="the film posted (default: a codecademy test film)")
    p.add_argument("--workers", type=int, default=1, help="cxr serve --workers")
    p.add_argument("--backend", default="auto")
    p = kinds.add_parser("reading", help="reading room under load and kill -9 -> results/reading_load.json")
    p.add_argument("run", nargs="?", type=Path, help="run directory to serve (default: a demo smallnet)")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--workers", type=int, default=2, help="cxr serve --workers")
    p.add_argument("--image", type=Path, help="the film posted (default: a codecademy test film)")
    p.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"])
    p = kinds.add_parser(
        "gateway",
        help="films by C-STORE to `cxr serve --dicom-port`, SRs back in a real Orthanc -> results/gateway.json",
    )
    p.add_argument("run", nargs="?", type=Path, help="run directory to serve (default: a demo smallnet)")
    p.add_argument("--senders", type=int, nargs="+", default=[1, 4], help="concurrent senders, one level each")
    p.add_argument("--films", type=int, default=200, help="films per level")
    p.add_argument("--image", type=Path, help="the film's pixels (default: a codecademy test film)")

    p = sub.add_parser(
        "monitor-replay",
        help="streams replayed to `cxr serve` with the shipped radiography model: does `cxr monitor` alert, and "
        "how soon -> results/monitor.json",
    )
    p.add_argument("streams", nargs="*", metavar="STREAM", help="only these streams (default: all six)")
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser(
        "confound-stability",
        help="the confound finder's verdicts over sampling seeds, per dataset -> results/confound_stability.json",
    )
    p.add_argument("--datasets", nargs="+", default=["radiography", "kermany", "codecademy", "pneumoniamnist"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    return ap


def _config_of(text: str | None, run: Path) -> dict | None:
    """--config-of with the run's own seed (its config.yaml)."""
    if not text:
        return None
    import yaml

    from benchmarks.common import parse_config_of

    saved = run / "config.yaml"
    if not saved.is_file():
        raise SystemExit(f"--config-of: {run} has no config.yaml to check it against")
    return parse_config_of(text, (yaml.safe_load(saved.read_text(encoding="utf-8")) or {}).get("seed", 0))


def _list() -> None:
    from benchmarks.common import study_space

    for name, spec in datasets().items():
        print(f"{name}: {spec['path']} (recipe: {spec['recipe'] or 'the defaults'})")
        for study, s in studies().items():
            if s["dataset"] == name:
                n = len(study_space(study).get("candidates") or {})
                print(f"  {study}: {n} candidates over the {s['over']}, objective {s['objective']}")


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if Path.cwd().resolve() != ROOT:
        raise SystemExit(f"run from the repository root ({ROOT}): datasets.yaml and the spaces name paths from there")
    command = shlex.join(["python", "-m", "benchmarks", *(sys.argv[1:] if argv is None else argv)])
    c = args.command
    if c == "list":
        _list()
    elif c in ("run", "place", "table"):
        from benchmarks import runs

        if c == "run":
            runs.run(args.benchmarks, args.seeds, args.reuse, args.publish)
        elif c == "place":
            print(runs.place(args.benchmark, args.run))
        else:
            print(runs.write_table())
    elif c == "select":
        from benchmarks.selection import select

        select(args.study, args.candidates, args.seeds, dict(args.reuse), args.objective, args.folds, command)
    elif c in ("cv", "cv-ensemble", "cv-external", "tta-cv", "temperature-prior"):
        from benchmarks import folds

        if c == "cv":
            folds.optimistic_cv(args.study, args.candidates, args.folds, command)
        elif c == "cv-ensemble":
            folds.cv_ensemble(args.dataset, args.candidates)
        elif c == "cv-external":
            folds.cv_external(args.study, args.candidates)
        elif c == "tta-cv":
            folds.tta_cv(args.cv_dirs)
        else:
            folds.temperature_prior(args.runs)
    elif c == "external":
        from benchmarks.sites import external

        external(args.benchmark, args.run, _config_of(args.config_of, args.run), command)
    elif c == "stress-guard":
        from benchmarks.sites import stress_guard

        stress_guard(args.benchmark, args.run, args.backend, _config_of(args.config_of, args.run), command)
    elif c == "site-adaptation":
        from benchmarks.sites import ADAPTATION_PAIRS, site_adaptation

        unknown = sorted(set(args.pairs) - set(ADAPTATION_PAIRS))
        if unknown:
            raise SystemExit(f"unknown pair(s) {unknown}; choose from {', '.join(ADAPTATION_PAIRS)}")
        site_adaptation(args.pairs)
    elif c == "site-calibration":
        from benchmarks.site_calibration import site_calibration

        site_calibration(
            args.case,
            args.run,
            args.seeds,
            not args.no_adapt,
            args.dedup,
            _config_of(args.config_of, args.run),
            command,
        )
    elif c == "speed":
        from benchmarks import speed

        if args.kind == "train":
            speed.train_speed(args.models, args.epochs, command)
        elif args.kind == "compile":
            speed.compile_speed(args.models, args.steps, command)
        elif args.kind == "models":
            speed.model_zoo(args.models, args.steps, command)
        elif args.kind == "predict":
            import os

            threads = args.threads or sorted({1, os.cpu_count() or 1})
            speed.predict_backends(args.models, args.size, args.batches, args.seconds, threads, command)
        else:
            speed.stress_speed(args.backends, command)
    elif c == "load":
        from benchmarks import load

        args.image = args.image or load.DEFAULT_IMAGE
        if args.kind == "serve":
            load.serve_load(args.run, args.clients, args.seconds, args.image, args.workers, args.backend, command)
        elif args.kind == "gateway":
            from benchmarks.gateway import gateway_benchmark

            gateway_benchmark(args.run, args.senders, args.films, args.image, command)
        else:
            load.reading_load(args, command)
    elif c == "confound-stability":
        from benchmarks.confound_stability import confound_stability

        confound_stability(args.datasets, args.seeds, command)
    elif c == "monitor-replay":
        from benchmarks.monitor_replay import monitor_replay

        monitor_replay(args.streams, args.seed, command)


if __name__ == "__main__":
    main()
