"""Inference without Lightning: bundle loading and batch prediction."""

from cxr.inference.bundle import Bundle, BundleMeta, read_bundle_file, save_bundle
from cxr.inference.predict import Predictions, decide, predict_arrays

__all__ = ["Bundle", "BundleMeta", "Predictions", "decide", "predict_arrays", "read_bundle_file", "save_bundle"]
