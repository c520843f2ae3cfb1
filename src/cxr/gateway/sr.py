"""The DICOM objects the gateway sends back to the PACS (IHE AI Results): each scored film as a Comprehensive 3D SR
holding a TID 1500 Measurement Report, a reader's read as a second SR, the Grad-CAM overlay as a Secondary Capture.

Every object joins the film's study (patient and study attributes come from the film through highdicom's evidence
mechanism) in a new series whose UIDs the caller made once and stored: a re-send is the same object, so nothing here
draws a random UID (tracking and device UIDs are derived from the ones passed). Codes, and why:

- procedure reported: SNOMED CT 399208008 "Plain chest X-ray" (a frontal film is one view, so LOINC 36643-5 "XR Chest
  2 Views" would misstate it);
- one measurement group per class, the findings (every class but `normal_class`) first: a viewer lists them as
  "Pneumonia: Present, Probability 0.83". The normal class's group carries its probability (so the SR holds the whole
  output) but no Present/Absent: "Normal: Present" would claim a normal film, which a model trained to tell a few
  classes apart cannot rule in (its "Normal" means "none of these");
- finding: the class as (99CXR, class, class), a private scheme named in CodingSchemeIdentificationSequence;
- decision: CID 240 "Present/Absent": SNOMED CT 52101004 Present, 272519000 Absent (the code CID 240 lists now;
  2667000 is inactive and still read), 373068000 Undetermined (a reader's "indeterminate": no presence claim);
- probability: (122157, DCM, "Probability") in UCUM "1" (no units);
- input check and "NOT FOR DIAGNOSTIC USE": TEXT items in the report's "Qualitative Evaluations" container (C0034375,
  UMLS; TID 1500) and, where they qualify every probability, in each group (TID 1501 allows TEXT evaluations).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import highdicom as hd
import numpy as np
from highdicom.coding_schemes import CodingSchemeIdentificationItem
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from cxr.gateway.results import ScoredFilm

SCHEME = "99CXR"
NOT_FOR_DIAGNOSTIC_USE = "NOT FOR DIAGNOSTIC USE"
INDETERMINATE = "indeterminate"
PROCEDURE = hd.sr.CodedConcept("399208008", "SCT", "Plain chest X-ray")
PROBABILITY = hd.sr.CodedConcept("122157", "DCM", "Probability")
NO_UNITS = hd.sr.CodedConcept("1", "UCUM", "no units")
PRESENT = hd.sr.CodedConcept("52101004", "SCT", "Present")
ABSENT = hd.sr.CodedConcept("272519000", "SCT", "Absent")
UNDETERMINED = hd.sr.CodedConcept("373068000", "SCT", "Undetermined")
QUALITATIVE_EVALUATIONS = hd.sr.CodedConcept("C0034375", "UMLS", "Qualitative Evaluations")
COMMENT = hd.sr.CodedConcept("121106", "DCM", "Comment")
INPUT_CHECK = hd.sr.CodedConcept("InputCheck", SCHEME, "Input check")
MODEL_RESULT = hd.sr.CodedConcept("ModelResult", SCHEME, "Model result")

_FINDING = ("DCM", "121071")
_GROUP = ("DCM", "125007")
_PRESENT_VALUES = {("SCT", "52101004")}
_ABSENT_VALUES = {("SCT", "272519000"), ("SCT", "2667000"), ("SRT", "G-A204")}
# Type 2 attributes highdicom copies from the film by attribute access: a film without one still gets its results
_PATIENT_STUDY = (
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
)
_PIXEL_DATA = 0x7FE00010
UTF8 = "ISO_IR 192"  # a reader named José; the film's values were decoded on reading, so they re-encode in UTF-8


def result_sr(
    source: Dataset,
    result: ScoredFilm,
    *,
    series_uid: str,
    instance_uid: str,
    series_number: int = 9901,
    instance_number: int = 1,
    manufacturer: str = "cxr",
) -> Dataset:
    """The model's result for one film: a TID 1500 report observed by the algorithm (a device), one group per class."""
    _check(result)
    header = _header(source)
    caveats = _caveats(result)
    findings, normal = [], []
    for name, probability in zip(result.classes, result.probabilities, strict=True):
        probability_item = hd.sr.Measurement(name=PROBABILITY, value=float(probability), unit=NO_UNITS)
        if name == result.normal_class:  # its probability, but no claim that the film is normal
            normal.append(_group(header, instance_uid, name, None, result, [probability_item], caveats))
        else:
            decision = PRESENT if result.predicted == name else ABSENT
            findings.append(_group(header, instance_uid, name, decision, result, [probability_item], caveats))
    groups = findings + normal
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=_derived_uid("device", result.algorithm.model_id, result.algorithm.model_version),
        name="cxr",
        manufacturer_name=manufacturer,
        model_name=result.algorithm.model_id,
        serial_number=result.algorithm.model_version,
    )
    context = hd.sr.ObservationContext(observer_device_context=hd.sr.ObserverContext(codes.DCM.Device, device))
    notes = ([_text(COMMENT, NOT_FOR_DIAGNOSTIC_USE)] if not result.for_diagnostic_use else []) + _input_check(result)
    description = "cxr AI result" if result.for_diagnostic_use else f"{NOT_FOR_DIAGNOSTIC_USE} - cxr AI result"
    placement = _placement(series_uid, series_number, instance_uid, instance_number, manufacturer)
    # is_final False (PRELIMINARY): the algorithm's result waits for a reader
    return _document(header, context, groups, notes, description, result.algorithm.model_id, False, **placement)


def read_sr(
    source: Dataset,
    result: ScoredFilm,
    *,
    reader_label: str,
    reader_name: str,
    read_version: int,
    series_uid: str,
    instance_uid: str,
    series_number: int = 9903,
    instance_number: int | None = None,
    manufacturer: str = "cxr",
) -> Dataset:
    """A reader's read of the film as a second TID 1500 report observed by that person: the read label as each finding
    Present or Absent ("indeterminate": Undetermined, no presence claim), next to what the model said."""
    _check(result)
    if reader_label != INDETERMINATE and reader_label not in result.classes:
        raise ValueError(f"read label {reader_label!r} is none of {list(result.classes)} nor {INDETERMINATE!r}")
    header = _header(source)
    groups = []
    for name in result.classes:
        if name == result.normal_class:
            continue
        if reader_label == INDETERMINATE:
            decision = UNDETERMINED
        else:
            decision = PRESENT if reader_label == name else ABSENT
        groups.append(_group(header, instance_uid, name, decision, None, [], []))
    person = hd.sr.PersonObserverIdentifyingAttributes(name=_person_name(reader_name))
    context = hd.sr.ObservationContext(observer_person_context=hd.sr.ObserverContext(codes.DCM.Person, person))
    notes = [_text(COMMENT, f"Read: {reader_label} (version {read_version})"), _text(MODEL_RESULT, _model_said(result))]
    number = read_version if instance_number is None else instance_number
    placement = _placement(series_uid, series_number, instance_uid, number, manufacturer)
    return _document(header, context, groups, notes, f"cxr reader read v{read_version}", None, True, **placement)


def overlay_sc(
    source: Dataset,
    rgb: np.ndarray,
    *,
    series_uid: str,
    instance_uid: str,
    series_number: int = 9902,
    instance_number: int = 1,
    manufacturer: str = "cxr",
    for_diagnostic_use: bool = False,
) -> Dataset:
    """The Grad-CAM overlay (H, W, 3 uint8 RGB) as a Secondary Capture image in the film's study, derived from it."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"the overlay must be an (H, W, 3) uint8 RGB array, not {rgb.shape} {rgb.dtype}")
    header = _header(source)
    description = "cxr Grad-CAM" if for_diagnostic_use else f"{NOT_FOR_DIAGNOSTIC_USE} - cxr Grad-CAM"
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=header,
        pixel_array=np.ascontiguousarray(rgb),
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        series_instance_uid=series_uid,
        series_number=series_number,
        sop_instance_uid=instance_uid,
        instance_number=instance_number,
        manufacturer=manufacturer,
        patient_orientation=_orientation(header),
        transfer_syntax_uid=ExplicitVRLittleEndian,
        series_description=description,
        specific_character_set=UTF8,
    )
    if len(header.get("PatientOrientation") or []) == 2:  # also a compound direction ("AL") highdicom cannot take
        sc.PatientOrientation = header.PatientOrientation
    sc.BurnedInAnnotation = "NO"  # the heat map carries no text, so no identifying text either
    sc.ImageComments = "Grad-CAM: where the model looked. " + ("" if for_diagnostic_use else NOT_FOR_DIAGNOSTIC_USE)
    sc.DerivationDescription = "Grad-CAM heat map blended over the film"
    reference = Dataset()
    reference.ReferencedSOPClassUID = header.SOPClassUID
    reference.ReferencedSOPInstanceUID = header.SOPInstanceUID
    sc.SourceImageSequence = [reference]
    return sc


def sr_findings(ds: Dataset) -> dict[str, float]:
    """Class -> probability (every class, the normal one included) from a result SR: the groups' Finding and
    Probability items."""
    findings = {}
    for name, group in _finding_groups(ds):
        for item in _children(group):
            if item.get("ValueType") == "NUM" and _concept(item) == ("DCM", "122157"):
                value = item.MeasuredValueSequence[0]
                findings[name] = float(value.get("FloatingPointValue", value.NumericValue))
    return findings


def sr_decisions(ds: Dataset) -> dict[str, bool]:
    """Finding class -> present (True) or absent (False) from a result or read SR; the normal class and an
    undetermined finding (no presence claim) are left out."""
    decisions = {}
    for name, group in _finding_groups(ds):
        for item in _children(group):
            if item.get("ValueType") != "CODE" or _concept(item) != (SCHEME, name):
                continue
            value = _code(item.ConceptCodeSequence[0])
            if value in _PRESENT_VALUES:
                decisions[name] = True
            elif value in _ABSENT_VALUES:
                decisions[name] = False
    return decisions


def _check(result: ScoredFilm) -> None:
    if len(result.classes) != len(result.probabilities):
        raise ValueError(f"{len(result.classes)} classes but {len(result.probabilities)} probabilities")
    if result.predicted not in result.classes:
        raise ValueError(f"predicted class {result.predicted!r} is none of {list(result.classes)}")
    if all(name == result.normal_class for name in result.classes):
        raise ValueError("a model whose only class is the normal one has no finding to report")


def _header(source: Dataset) -> Dataset:
    """The film without its pixels (nothing to copy around), with any missing patient/study attribute empty."""
    header = Dataset()
    for element in source:
        if element.tag != _PIXEL_DATA:
            header.add(element)
    for keyword in _PATIENT_STUDY:
        if keyword not in header:
            setattr(header, keyword, None)
    return header


def _derived_uid(*parts: str) -> str:
    """The same UID for the same parts: a re-sent object must be identical, content items included."""
    return generate_uid(entropy_srcs=["cxr", *parts])


def _finding(name: str) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(value=name, scheme_designator=SCHEME, meaning=name[:64])


def _text(name: hd.sr.CodedConcept, value: str) -> hd.sr.TextContentItem:
    return hd.sr.TextContentItem(name=name, value=value, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)


def _algorithm(result: ScoredFilm) -> hd.sr.AlgorithmIdentification:
    facts = result.algorithm
    if result.threshold is None:
        rule = "decision: the most probable class"
    else:
        rule = f"decision: threshold {result.threshold:g} on P({result.classes[1]})"
    return hd.sr.AlgorithmIdentification(
        name=facts.model_id,
        version=facts.model_version,
        parameters=[facts.architecture, f"cxr {facts.cxr_version}", rule],
    )


def _caveats(result: ScoredFilm) -> list[hd.sr.TextContentItem]:
    """What qualifies every probability, so it goes in each group too (a viewer may show only the groups)."""
    caveats = [] if result.for_diagnostic_use else [_text(COMMENT, NOT_FOR_DIAGNOSTIC_USE)]
    return caveats + (_input_check(result) if result.in_distribution is False else [])


def _input_check(result: ScoredFilm) -> list[hd.sr.TextContentItem]:
    if result.in_distribution is None:
        return []
    score = "" if result.guard_score is None else f" (score {result.guard_score:.3f})"
    if result.in_distribution:
        return [_text(INPUT_CHECK, f"passed{score}")]
    return [_text(INPUT_CHECK, f"unlike the training films - {result.guard_reason or 'no reason given'}{score}")]


def _group(
    header: Dataset,
    instance_uid: str,
    name: str,
    decision: hd.sr.CodedConcept | None,
    result: ScoredFilm | None,
    measurements: list[hd.sr.Measurement],
    texts: list[hd.sr.TextContentItem],
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    """One class: its tracking identifier, Finding code, the decision about it (None: none) and (from the model) its
    probability and the algorithm; every group references the film."""
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=_derived_uid(instance_uid, name), identifier=name),
        finding_type=_finding(name),
        algorithm_id=None if result is None else _algorithm(result),
        measurements=measurements,
        qualitative_evaluations=[] if decision is None else [hd.sr.QualitativeEvaluation(_finding(name), decision)],
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(header)],
    )
    for text in texts:
        group[0].ContentSequence.append(_text(text.name, text.TextValue))
    return group


def _placement(
    series_uid: str, series_number: int, instance_uid: str, instance_number: int, manufacturer: str
) -> dict[str, Any]:
    """Where the SR goes, in highdicom's argument names."""
    return {
        "series_instance_uid": series_uid,
        "series_number": series_number,
        "sop_instance_uid": instance_uid,
        "instance_number": instance_number,
        "manufacturer": manufacturer,
    }


def _document(
    header: Dataset,
    context: hd.sr.ObservationContext,
    groups: list[hd.sr.MeasurementsAndQualitativeEvaluations],
    notes: list[hd.sr.TextContentItem],
    description: str,
    model_name: str | None,
    is_final: bool,
    **placement: Any,
) -> Dataset:
    """The SR around a report, with the report's Qualitative Evaluations (`notes`) added: highdicom's
    MeasurementReport makes only the Imaging Measurements container of TID 1500."""
    report = hd.sr.MeasurementReport(
        observation_context=context,
        procedure_reported=PROCEDURE,
        imaging_measurements=groups,  # no Image Library (TID 1600): each group references the film already
    )
    if notes:
        evaluations = hd.sr.ContainerContentItem(
            name=QUALITATIVE_EVALUATIONS, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
        )
        evaluations.ContentSequence = hd.sr.ContentSequence(notes)
        report[0].ContentSequence.append(evaluations)
    return hd.sr.Comprehensive3DSR(
        evidence=[header],
        content=report,
        is_complete=True,
        is_final=is_final,
        series_description=description[:64],
        manufacturer_model_name=None if model_name is None else model_name[:64],
        coding_schemes=[
            CodingSchemeIdentificationItem(
                designator=SCHEME, name="cxr model classes and notes", responsible_organization="cxr"
            )
        ],
        specific_character_set=UTF8,
        **placement,
    )


def _person_name(name: str) -> str:
    """A reading-room user name as a DICOM person name: with no caret, the whole name is the family name."""
    return name if "^" in name else f"{name}^"


def _model_said(result: ScoredFilm) -> str:
    probabilities = ", ".join(f"P({c})={p:.3f}" for c, p in zip(result.classes, result.probabilities, strict=True))
    facts = result.algorithm
    said = f"model {facts.model_id} ({facts.model_version}) said {result.predicted}: {probabilities}"
    return said if result.for_diagnostic_use else f"{said}; {NOT_FOR_DIAGNOSTIC_USE}"


def _orientation(header: Dataset) -> tuple[str, str]:
    """The film's row/column directions; a film without them is shown as chest films are (patient's left on the
    viewer's right, feet down)."""
    biped = {value.value for value in hd.PatientOrientationValuesBiped}
    orientation = [str(value) for value in header.get("PatientOrientation", None) or []]
    if len(orientation) == 2 and all(value in biped for value in orientation):
        return orientation[0], orientation[1]
    return "L", "F"


def _code(item: Dataset) -> tuple[str, str]:
    value = item.get("CodeValue") or item.get("LongCodeValue") or item.get("URNCodeValue") or ""
    return str(item.get("CodingSchemeDesignator", "")), str(value)


def _concept(item: Dataset) -> tuple[str, str] | None:
    names = item.get("ConceptNameCodeSequence")
    return _code(names[0]) if names else None


def _children(item: Dataset) -> Sequence[Dataset]:
    return item.get("ContentSequence") or []


def _items(node: Dataset) -> Iterator[Dataset]:
    for item in _children(node):
        yield item
        yield from _items(item)


def _finding_groups(ds: Dataset) -> Iterator[tuple[str, Dataset]]:
    """(class, group) for each Measurement Group whose Finding is a cxr class, anywhere in the content tree."""
    for group in _items(ds):
        if group.get("ValueType") != "CONTAINER" or _concept(group) != _GROUP:
            continue
        for item in _children(group):
            if item.get("ValueType") == "CODE" and _concept(item) == _FINDING:
                scheme, name = _code(item.ConceptCodeSequence[0])
                if scheme == SCHEME:
                    yield name, group
                break
