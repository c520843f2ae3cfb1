"""Which received instances the model scores: chest frontals, by the header fields a PACS fills in (Modality,
ImageType, ViewPosition, BodyPartExamined). The rules are settings (`FrontalRules`), so a site whose modality writes
"LL" for a lateral or leaves ViewPosition empty can say what it means; the input guard still checks every scored film.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.dataset import Dataset

from cxr.gateway.config import FrontalRules


@dataclass(frozen=True)
class Verdict:
    score: bool
    reason: str | None = None  # why not, in plain words (kept on the instance row and shown by `cxr gateway list`)


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or hasattr(value, "__iter__") and not isinstance(value, str):
        return "\\".join(str(v).strip().upper() for v in value)
    return str(value).strip().upper()


def frontal(ds: Dataset, rules: FrontalRules) -> Verdict:
    """Whether `ds` (a header; pixels not needed) is a film the model should score."""
    modality = _text(ds, "Modality")
    if modality not in {m.upper() for m in rules.modalities}:
        return Verdict(False, f"modality {modality or 'missing'} is not one of {', '.join(rules.modalities)}")
    image_type = _text(ds, "ImageType")
    for excluded in rules.excluded_image_types:
        if excluded.upper() in image_type:
            return Verdict(False, f"image type {image_type} is excluded ({excluded})")
    body_part = _text(ds, "BodyPartExamined")
    if body_part not in {b.upper() for b in rules.body_parts}:
        return Verdict(False, f"body part {body_part} is not a chest")
    view = _text(ds, "ViewPosition")
    if not view:
        return (
            Verdict(True) if rules.allow_missing_view else Verdict(False, "no ViewPosition (not known to be frontal)")
        )
    if view not in {v.upper() for v in rules.view_positions}:
        return Verdict(False, f"view {view} is not frontal ({', '.join(rules.view_positions)})")
    return Verdict(True)
