"""Explainability: Grad-CAM overlays, feature maps, image grids and the shortcut (border) audit.

Depends on `cxr.inference` and `cxr.data` only (never Lightning).
"""

from cxr.explain.cam import CamExplainer, Explanation, choose_target_layer
from cxr.explain.images import ExplainResult, explain_array_png, explain_images

__all__ = ["CamExplainer", "Explanation", "ExplainResult", "choose_target_layer", "explain_array_png", "explain_images"]
