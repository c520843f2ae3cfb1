"""Grad-CAM / Grad-CAM++ for a loaded bundle, via MONAI's CAM classes, on files or decoded uint8 arrays.

The model sees the image squashed to image_size x image_size (exactly as `predict` does); the heatmap computed there
is stretched back to the image's own height and width, so overlays keep the input's aspect ratio and stay aligned.
"""

from __future__ import annotations

import copy
import threading
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from monai.visualize import GradCAM, GradCAMpp
from monai.visualize.class_activation_maps import ModelWithHooks
from PIL import Image

from cxr.data.images import ImageReadError, find_images, load_grayscale
from cxr.data.transforms import normalise
from cxr.errors import CxrError
from cxr.inference.predict import decide, predict_arrays

METHODS = {"gradcam": GradCAM, "gradcam++": GradCAMpp}
DISPLAY_MAX_SIDE = 1024  # overlays of 4k radiographs are downscaled to this long side (aspect kept)


@dataclass
class Explanation:
    """One image's Grad-CAM: `heatmap` matches `image` pixel for pixel; `cam` is in the model's input frame."""

    image: np.ndarray  # uint8 (H, W): the X-ray as shown (original aspect, long side <= DISPLAY_MAX_SIDE)
    heatmap: np.ndarray  # float32 (H, W) in 0..1 (divided by its maximum; all zeros when the CAM is empty)
    cam: np.ndarray  # float32 (S, S), raw non-negative Grad-CAM at model resolution (for mass measurements)
    probabilities: np.ndarray  # (C,) as `predict` reports them
    predicted_index: int
    class_index: int  # the class explained (predicted unless asked otherwise)
    classes: list[str]
    method: str
    layer: str
    path: Path | None = None
    label: str | None = None  # true class when known (e.g. the image's class folder)

    @property
    def predicted(self) -> str:
        return self.classes[self.predicted_index]

    @property
    def explained(self) -> str:
        return self.classes[self.class_index]

    @property
    def correct(self) -> bool | None:
        return None if self.label is None else self.label == self.predicted


def choose_target_layer(model: torch.nn.Module, image_size: int, in_channels: int = 1) -> str:
    """The last module (in execution order) whose output still has a spatial map: Grad-CAM's usual target.

    Found by one dummy forward pass, so it works for any registered model without a hand-kept table. Modules
    called more than once (shared activations, e.g. EfficientNet's `_swish`) are skipped: their hooks would
    mix the gradients of several places in the network. A map computed before any learnt layer (e.g. the pooled
    film of `dense-baseline`) is the input, not a feature map, and is skipped too.
    """
    finished: list[tuple[str, tuple[int, ...], bool]] = []
    calls: dict[str, int] = {}
    hooks = []
    learnt = {"seen": False}  # has a module with its own parameters run yet?
    for name, module in model.named_modules():
        if not name:
            continue

        def record(m, _inp, out, name=name):
            calls[name] = calls.get(name, 0) + 1
            learnt["seen"] = learnt["seen"] or next(m.parameters(recurse=False), None) is not None
            if isinstance(out, torch.Tensor):
                finished.append((name, tuple(out.shape), learnt["seen"]))

        hooks.append(module.register_forward_hook(record))
    was_training = model.training
    try:
        model.eval()
        device = next(model.parameters()).device
        with torch.no_grad():
            model(torch.zeros(1, in_channels, image_size, image_size, device=device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    spatial = [
        n for n, s, learnt_before in finished if len(s) == 4 and max(s[2:]) > 1 and calls[n] == 1 and learnt_before
    ]
    if not spatial:
        raise CxrError(
            f"this model has no learnt layer with a spatial feature map at image size {image_size} (a "
            "dense network such as dense-baseline has none), so Grad-CAM cannot explain it"
        )
    return spatial[-1]


def _check_layer(model: torch.nn.Module, layer: str) -> None:
    names = [n for n, _ in model.named_modules() if n]
    if layer not in names:
        near = [n for n in names if layer.split(".")[0] in n][:8] or names[-8:]
        raise CxrError(f"model has no layer {layer!r}; try one of: {', '.join(near)}")


def _resize(values: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of a float map (H, W) -> (height, width), as MONAI's CAM upsampler does."""
    t = torch.as_tensor(values, dtype=torch.float32)[None, None]
    return F.interpolate(t, size=(height, width), mode="bilinear", align_corners=False)[0, 0].numpy()


def _display_copy(image: np.ndarray, max_side: int = DISPLAY_MAX_SIDE) -> np.ndarray:
    h, w = image.shape
    scale = max_side / max(h, w)
    if scale >= 1:
        return image
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))


def _model_input(image: np.ndarray, size: int) -> np.ndarray:
    """Squash an (H, W) uint8 array to (size, size) the way `load_grayscale(path, size)` does (PIL bilinear)."""
    if image.ndim != 2 or image.dtype != np.uint8:
        raise CxrError(f"expected a grayscale uint8 image (H, W), got {image.dtype} {image.shape}; use load_grayscale")
    if image.shape == (size, size):
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR))


class _LogOddsHooks(ModelWithHooks):
    """MONAI's hooked model, scoring a class by its log-odds log(p_c / (1 - p_c)) instead of its raw logit.

    With a softmax head, one class's logit carries an arbitrary offset shared by all classes: a binary model often
    puts all its evidence in one logit, and the raw Grad-CAM of the other class is empty. The log-odds is what the
    decision depends on (for two classes it is y_c - y_other) and does not saturate like log p_c.
    """

    def class_score(self, logits: torch.Tensor, class_idx: int) -> torch.Tensor:
        logits = logits.float()
        others = torch.cat([logits[:, :class_idx], logits[:, class_idx + 1 :]], dim=1)
        score = logits[:, class_idx] - torch.logsumexp(others, dim=1)
        # Grad-CAM++ multiplies by exp(score): clamp that value (not its gradient) so it cannot overflow, and
        # shape it (B, 1, 1, 1) so it broadcasts per image (MONAI's squeezed (B,) shape breaks batches > 1).
        score = score + (score.clamp(-50, 50) - score).detach()
        return score.view(-1, 1, 1, 1)


class CamExplainer:
    """Grad-CAM for one bundle. Build it once and reuse it (a service should keep one): it hooks a private copy
    of the model, so the bundle's own model (used for prediction) never carries CAM hooks; calls are serialised."""

    def __init__(self, bundle, method: str = "gradcam", layer: str | None = None):
        if method not in METHODS:
            raise CxrError(f"unknown CAM method {method!r}; choose one of {', '.join(METHODS)}")
        self.bundle = bundle
        self.meta = bundle.meta
        self.method = method
        self.model = copy.deepcopy(bundle.model).eval()
        for p in self.model.parameters():
            p.requires_grad_(True)
        self.layer = layer or choose_target_layer(self.model, self.meta.image_size)
        _check_layer(self.model, self.layer)
        # Identity postprocessing: MONAI's default normaliser maps max -> 0 (it flips magnitudes), and the audit
        # needs the raw non-negative map to measure where the mass is.
        hooked = _LogOddsHooks(self.model, self.layer, register_forward=True, register_backward=True)
        self._cam = METHODS[method](nn_module=hooked, target_layers=self.layer, postprocessing=lambda x: x)
        self._lock = threading.Lock()

    @property
    def classes(self) -> list[str]:
        return list(self.meta.classes)

    def class_index(self, class_name: str | None) -> int | None:
        if class_name is None:
            return None
        if class_name not in self.meta.classes:
            raise CxrError(f"unknown class {class_name!r}; this model's classes are {', '.join(self.meta.classes)}")
        return self.meta.classes.index(class_name)

    def cams(self, model_inputs: np.ndarray, class_indices: np.ndarray) -> np.ndarray:
        """(N, S, S) uint8 and one class index per image -> (N, S, S) raw Grad-CAMs (one backward per class)."""
        device = next(self.model.parameters()).device
        out = np.zeros(model_inputs.shape, np.float32)
        x_all = normalise(model_inputs, self.meta.mean, self.meta.std).to(device)
        with self._lock, torch.inference_mode(False), torch.enable_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Ff]ull backward hook.*")  # inputs need no gradient here
            for c in np.unique(class_indices):
                rows = np.flatnonzero(class_indices == c)
                maps = self._cam(x_all[rows].clone(), class_idx=int(c))
                out[rows] = torch.nan_to_num(maps.detach().float()).clamp_min(0)[:, 0].cpu().numpy()
        return out

    def explain_arrays(
        self,
        images: Sequence[np.ndarray],
        class_name: str | None = None,
        paths: Sequence[Path | None] | None = None,
        labels: Sequence[str | None] | None = None,
        model_inputs: np.ndarray | None = None,
    ) -> list[Explanation]:
        """Explain decoded grayscale uint8 arrays of any size (e.g. an upload decoded by `load_grayscale`).

        `model_inputs` (N, S, S) may be passed when the caller already has the exact pixels `predict` uses.
        """
        if not len(images):
            return []
        size = self.meta.image_size
        if model_inputs is None:
            model_inputs = np.stack([_model_input(im, size) for im in images])
        probs = predict_arrays(
            self.bundle.model, model_inputs, self.meta.mean, self.meta.std, getattr(self.meta, "temperature", 1.0)
        )
        predicted = decide(probs, self.meta.threshold)
        wanted = self.class_index(class_name)
        targets = predicted if wanted is None else np.full(len(images), wanted)
        cams = self.cams(model_inputs, targets)
        result = []
        for i, image in enumerate(images):
            shown = _display_copy(image)
            heat = _resize(cams[i], *shown.shape)
            peak = float(heat.max())
            result.append(
                Explanation(
                    image=shown,
                    heatmap=(heat / peak if peak > 0 else np.zeros_like(heat)).astype(np.float32),
                    cam=cams[i],
                    probabilities=probs[i],
                    predicted_index=int(predicted[i]),
                    class_index=int(targets[i]),
                    classes=self.classes,
                    method=self.method,
                    layer=self.layer,
                    path=None if paths is None else paths[i],
                    label=None if labels is None else labels[i],
                )
            )
        return result

    def explain_paths(
        self,
        paths: Iterable[str | Path],
        class_name: str | None = None,
        labels: dict[Path, str] | None = None,
        batch_size: int = 16,
    ) -> Iterable[Explanation | str]:
        """Yield an Explanation per readable image (folders searched recursively), or the error message of an
        unreadable one. The true label comes from `labels`, else from a parent folder named like a class."""
        files = find_images(list(paths))
        for start in range(0, len(files), batch_size):
            batch, shown, inputs, errors = [], [], [], []
            for p in files[start : start + batch_size]:
                try:
                    inputs.append(load_grayscale(p, self.meta.image_size))  # the very pixels `predict` sees
                    shown.append(load_grayscale(p))
                    batch.append(p)
                except ImageReadError as e:
                    errors.append(str(e))
            yield from errors
            if batch:
                truth = [(labels or {}).get(Path(p)) or _label_from_folder(p, self.meta.classes) for p in batch]
                yield from self.explain_arrays(shown, class_name, batch, truth, np.stack(inputs))


def _label_from_folder(path: Path, classes: list[str]) -> str | None:
    return path.parent.name if path.parent.name in classes else None
