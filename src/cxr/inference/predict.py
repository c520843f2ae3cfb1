"""Batch prediction that streams: decode a batch, run it, keep only the probabilities."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.progress import Progress

from cxr.data.images import ImageInfo, ImageReadError, describe_image, find_images, load_grayscale
from cxr.data.transforms import normalise


@dataclass
class Predictions:
    """What `Bundle.predict` returns: one row per readable image, in `paths` order; unreadable ones in `errors`."""

    paths: list[Path]
    probabilities: np.ndarray  # (N, C), rows sum to 1
    classes: list[str]
    threshold: float | None
    errors: list[str]  # unreadable inputs, skipped
    logits: np.ndarray | None = None  # (N, C) raw model outputs, before temperature and softmax
    # the input guard's verdicts (None when the model has none): score over 1 = unlike the training films
    ood_score: np.ndarray | None = None
    in_distribution: np.ndarray | None = None
    ood_reason: list[str] | None = None

    @property
    def flagged(self) -> int:
        return 0 if self.in_distribution is None else int((~self.in_distribution).sum())

    def subset(self, keep: np.ndarray) -> Predictions:
        """The predictions of the images where `keep` is true (e.g. `--reject-ood` keeps the in-distribution ones)."""
        idx = np.flatnonzero(keep)
        pick = lambda a: None if a is None else a[idx]  # noqa: E731
        return Predictions(
            [self.paths[i] for i in idx],
            self.probabilities[idx],
            self.classes,
            self.threshold,
            self.errors,
            pick(self.logits),
            pick(self.ood_score),
            pick(self.in_distribution),
            None if self.ood_reason is None else [self.ood_reason[i] for i in idx],
        )

    @property
    def predicted_index(self) -> np.ndarray:
        return decide(self.probabilities, self.threshold)

    @property
    def predicted(self) -> list[str]:
        return [self.classes[i] for i in self.predicted_index]

    def write_csv(self, path: str | Path) -> None:
        """`path, predicted, p_<class>...`: the CSV `cxr predict --out` writes."""
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            guarded = self.ood_score is not None
            w.writerow(
                [
                    "path",
                    "predicted",
                    *[f"p_{c}" for c in self.classes],
                    *(["ood_score", "in_distribution", "ood_reason"] if guarded else []),
                ]
            )
            for i, (p, label, probs) in enumerate(zip(self.paths, self.predicted, self.probabilities)):
                guard = []
                if guarded:
                    guard = [f"{self.ood_score[i]:.4f}", str(bool(self.in_distribution[i])).lower(), self.ood_reason[i]]
                w.writerow([str(p), label, *[f"{x:.6f}" for x in probs], *guard])


def decide(probabilities: np.ndarray, threshold: float | None) -> np.ndarray:
    """Argmax, or for binary models with a threshold: positive (index 1) when P(positive) >= threshold."""
    if threshold is not None and probabilities.shape[1] == 2:
        return (probabilities[:, 1] >= threshold).astype(np.int64)
    return probabilities.argmax(axis=1)


def _chunks(items: list, size: int) -> Iterable[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def apply_temperature(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """(N, C) logits -> probabilities, softmax(logits / T): the one place a bundle's temperature is applied."""
    z = torch.as_tensor(np.asarray(logits), dtype=torch.float64) / float(temperature)
    return torch.softmax(z, dim=1).to(torch.float32).numpy()


@torch.inference_mode()
def predict_logits(model: torch.nn.Module, images_uint8: np.ndarray, mean: float, std: float) -> np.ndarray:
    """(N, S, S) uint8 -> (N, C) logits, on whatever device the model is on."""
    device = next(model.parameters()).device
    x = normalise(images_uint8, mean, std).to(device)
    return model(x).float().cpu().numpy()


def predict_arrays(
    model: torch.nn.Module, images_uint8: np.ndarray, mean: float, std: float, temperature: float = 1.0
) -> np.ndarray:
    """(N, S, S) uint8 -> (N, C) probabilities."""
    return apply_temperature(predict_logits(model, images_uint8, mean, std), temperature)


def decoded_batches(
    paths,
    image_size: int,
    batch_size: int = 32,
    progress: bool = False,
    label: str = "predicting",
    infos: list[ImageInfo] | None = None,
) -> Iterator[tuple[list[Path], np.ndarray | None, list[str]]]:
    """Files and folders -> (readable paths, (n, S, S) uint8 or None, errors) per batch: decoded in threads, streamed.
    `infos`: a list that receives each readable file's ImageInfo (what the input guard checks), in the same order."""
    files = find_images(list(paths))

    def read(p: Path):
        try:
            return load_grayscale(p, image_size), (describe_image(p) if infos is not None else None)
        except ImageReadError as e:
            return str(e)

    with (
        ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool,
        Progress(transient=True, disable=not progress) as bar,
    ):
        task = bar.add_task(label, total=len(files))
        for chunk in _chunks(files, batch_size):
            decoded = list(pool.map(read, chunk))
            good = [(p, a) for p, a in zip(chunk, decoded) if not isinstance(a, str)]
            errors = [a for a in decoded if isinstance(a, str)]
            if infos is not None:
                infos.extend(info for _, (_, info) in good)
            yield [p for p, _ in good], (np.stack([a for _, (a, _) in good]) if good else None), errors
            bar.advance(task, len(chunk))


def predict_paths(bundle, paths, batch_size: int = 32, progress: bool = False, tta: bool = False) -> Predictions:
    meta = bundle.meta
    kept: list[Path] = []
    logits: list[np.ndarray] = []
    errors: list[str] = []
    infos: list[ImageInfo] | None = [] if bundle.guard is not None else None
    verdicts = []
    for good, images, bad in decoded_batches(paths, meta.image_size, batch_size, progress, infos=infos):
        errors.extend(bad)
        if images is not None:
            batch_logits, verdict = bundle.logits_and_guard(images, None if infos is None else infos[len(kept) :], tta)
            kept.extend(good)
            logits.append(batch_logits)
            verdicts.append(verdict)
    all_logits = np.concatenate(logits) if logits else np.zeros((0, len(meta.classes)), np.float32)
    preds = Predictions(
        paths=kept,
        probabilities=apply_temperature(all_logits, meta.temperature),
        classes=list(meta.classes),
        threshold=meta.threshold,
        errors=errors,
        logits=all_logits,
    )
    if bundle.guard is not None:
        preds.ood_score = np.concatenate([v.scores for v in verdicts]) if verdicts else np.zeros(0, np.float32)
        preds.in_distribution = np.concatenate([v.in_distribution for v in verdicts]) if verdicts else np.zeros(0, bool)
        preds.ood_reason = [r for v in verdicts for r in v.reasons]
    return preds
