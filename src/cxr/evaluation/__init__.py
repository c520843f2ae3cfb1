"""Evaluation: metrics, plots and the `evaluate_run` entry point."""
