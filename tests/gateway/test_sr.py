"""The gateway's DICOM results: what a PACS receives must carry the film's study, the UIDs the outbox stored, the
model's probabilities and decisions, its caveats, and stay readable after a trip through bytes (and through DCMTK)."""

from __future__ import annotations

import dataclasses
import io
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("highdicom")  # the optional "dicom" extra

import pydicom  # noqa: E402
from pydicom.dataset import Dataset  # noqa: E402
from pydicom.uid import Comprehensive3DSRStorage, SecondaryCaptureImageStorage, generate_uid  # noqa: E402

from cxr.gateway.results import AlgorithmFacts, ScoredFilm  # noqa: E402
from cxr.gateway.sr import overlay_sc, read_sr, result_sr, sr_decisions, sr_findings  # noqa: E402
from tests.gateway.films import dx_film, encode  # noqa: E402

ALGORITHM = AlgorithmFacts(
    model_id="covid3-densenet-2026", model_version="0123456789ab", architecture="densenet121", cxr_version="0.8.0"
)
THREE = ("Covid", "Normal", "Viral Pneumonia")
BINARY = ("Normal", "Pneumonia")


def scored(**changes: object) -> ScoredFilm:
    """A 3-class result (argmax: Viral Pneumonia) with a guard that passed; `changes` make the other cases."""
    base = ScoredFilm(
        film_id="film-1",
        classes=THREE,
        probabilities=(0.123456789, 0.2, 0.676543211),
        predicted="Viral Pneumonia",
        threshold=None,
        normal_class="Normal",
        in_distribution=True,
        guard_score=0.12,
        guard_reason=None,
        algorithm=ALGORITHM,
    )
    return dataclasses.replace(base, **changes)


def reread(ds: Dataset) -> Dataset:
    """What the PACS holds: the Part 10 bytes read back with plain pydicom."""
    return pydicom.dcmread(io.BytesIO(encode(ds)))


def make_sr(film: Dataset, result: ScoredFilm) -> Dataset:
    return reread(result_sr(film, result, series_uid=generate_uid(), instance_uid=generate_uid()))


def texts(ds: Dataset) -> list[tuple[str, str]]:
    """(concept meaning, text) of every TEXT/PNAME item in the content tree."""
    found = []
    for item in ds.get("ContentSequence", []):
        name = item.ConceptNameCodeSequence[0].CodeMeaning if "ConceptNameCodeSequence" in item else ""
        if item.ValueType == "TEXT":
            found.append((name, str(item.TextValue)))
        elif item.ValueType == "PNAME":
            found.append((name, str(item.PersonName)))
        found.extend(texts(item))
    return found


def codes_in(ds: Dataset) -> list[tuple[str, str, str]]:
    """(concept meaning, value code, value meaning) of every CODE item in the content tree."""
    found = []
    for item in ds.get("ContentSequence", []):
        if item.ValueType == "CODE":
            value = item.ConceptCodeSequence[0]
            code = value.get("CodeValue") or value.get("LongCodeValue")
            found.append((item.ConceptNameCodeSequence[0].CodeMeaning, code, value.CodeMeaning))
        found.extend(codes_in(item))
    return found


@pytest.fixture(scope="module")
def film() -> Dataset:
    return dx_film(accession="ACC4242", patient_id="PAT4242")


def test_result_sr_is_a_tid1500_comprehensive_3d_sr_in_the_films_study(film: Dataset) -> None:
    ds = make_sr(film, scored())
    assert ds.SOPClassUID == Comprehensive3DSRStorage and ds.Modality == "SR"
    template = ds.ContentTemplateSequence[0]
    assert (template.TemplateIdentifier, template.MappingResource) == ("1500", "DCMR")
    for keyword in ("StudyInstanceUID", "AccessionNumber", "PatientID", "PatientName", "PatientBirthDate"):
        assert ds[keyword].value == film[keyword].value, keyword
    assert ds.SeriesInstanceUID != film.SeriesInstanceUID
    evidence = ds.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == film.SOPInstanceUID
    assert ("Procedure reported", "399208008", "Plain chest X-ray") in codes_in(ds)
    assert ds.CodingSchemeIdentificationSequence[0].CodingSchemeDesignator == "99CXR"


def test_the_uids_passed_are_used_and_a_resend_is_the_same_object(film: Dataset) -> None:
    series_uid, instance_uid = generate_uid(), generate_uid()
    first, second = (
        reread(result_sr(film, scored(), series_uid=series_uid, instance_uid=instance_uid)) for _ in range(2)
    )
    for ds in (first, second):
        assert (ds.SeriesInstanceUID, ds.SOPInstanceUID) == (series_uid, instance_uid)
        assert ds.file_meta.MediaStorageSOPInstanceUID == instance_uid
    uids = [[(name, value) for name, value in _uidrefs(ds)] for ds in (first, second)]
    assert uids[0] == uids[1] and len(uids[0]) == 4  # the device observer, one tracking UID per class


def _uidrefs(ds: Dataset) -> list[tuple[str, str]]:
    found = []
    for item in ds.get("ContentSequence", []):
        if item.ValueType == "UIDREF":
            found.append((item.ConceptNameCodeSequence[0].CodeMeaning, str(item.UID)))
        found.extend(_uidrefs(item))
    return found


@pytest.mark.parametrize(
    ("result", "findings", "decisions"),
    [
        pytest.param(
            scored(),
            {"Covid": 0.123456789, "Viral Pneumonia": 0.676543211, "Normal": 0.2},
            {"Covid": False, "Viral Pneumonia": True},
            id="3-class-argmax",
        ),
        pytest.param(
            scored(probabilities=(0.1, 0.7654321, 0.1345679), predicted="Normal"),
            {"Covid": 0.1, "Viral Pneumonia": 0.1345679, "Normal": 0.7654321},
            {"Covid": False, "Viral Pneumonia": False},
            id="3-class-normal",
        ),
        pytest.param(  # the threshold says Pneumonia although Normal is the more probable class
            scored(classes=BINARY, probabilities=(0.6172839, 0.3827161), predicted="Pneumonia", threshold=0.3),
            {"Pneumonia": 0.3827161, "Normal": 0.6172839},
            {"Pneumonia": True},
            id="binary-threshold-below-argmax",
        ),
        pytest.param(
            scored(classes=BINARY, probabilities=(0.8, 0.2), predicted="Normal", threshold=0.3),
            {"Pneumonia": 0.2, "Normal": 0.8},
            {"Pneumonia": False},
            id="binary-absent",
        ),
        pytest.param(  # over 16 characters: no longer a CodeValue (SH) but a LongCodeValue
            scored(
                classes=("Normal", "Lung Opacity Consolidation"),
                probabilities=(0.25, 0.75),
                predicted="Lung Opacity Consolidation",
                threshold=0.5,
            ),
            {"Lung Opacity Consolidation": 0.75, "Normal": 0.25},
            {"Lung Opacity Consolidation": True},
            id="long-class-name",
        ),
    ],
)
def test_probabilities_and_decisions_survive_the_trip_through_bytes(
    film: Dataset, result: ScoredFilm, findings: dict[str, float], decisions: dict[str, bool]
) -> None:
    ds = make_sr(film, result)
    read = sr_findings(ds)
    assert list(read) == list(findings)  # the findings first, the normal class last
    assert read == pytest.approx(findings, abs=1e-6)
    assert sr_decisions(ds) == decisions
    assert not [name for name, _, _ in codes_in(ds) if name == "Normal"]  # no claim that the film is normal


def test_the_algorithm_and_its_decision_rule_are_identified(film: Dataset) -> None:
    found = texts(make_sr(film, scored(classes=BINARY, probabilities=(0.4, 0.6), predicted="Pneumonia", threshold=0.3)))
    assert ("Algorithm Name", "covid3-densenet-2026") in found
    assert ("Algorithm Version", "0123456789ab") in found
    assert {"densenet121", "cxr 0.8.0", "decision: threshold 0.3 on P(Pneumonia)"} <= {
        text for name, text in found if name == "Algorithm Parameters"
    }
    assert ("Device Observer Model Name", "covid3-densenet-2026") in found
    assert ("Device Observer Serial Number", "0123456789ab") in found


def test_the_input_checks_verdict_is_shown_and_absent_without_a_guard(film: Dataset) -> None:
    flagged = texts(make_sr(film, scored(in_distribution=False, guard_score=0.97, guard_reason="a photograph")))
    checks = [text for name, text in flagged if name == "Input check"]
    assert checks and all(text.startswith("unlike the training films - a photograph") for text in checks)
    assert len(checks) == 4  # the report's evaluations and each class's group
    passed = [text for name, text in texts(make_sr(film, scored())) if name == "Input check"]
    assert passed == ["passed (score 0.120)"]
    unguarded = scored(in_distribution=None, guard_score=None)
    assert not [name for name, _ in texts(make_sr(film, unguarded)) if name == "Input check"]


def test_not_for_diagnostic_use_is_said_only_when_true(film: Dataset) -> None:
    research = make_sr(film, scored())
    assert "NOT FOR DIAGNOSTIC USE" in research.SeriesDescription
    assert ("Comment", "NOT FOR DIAGNOSTIC USE") in texts(research)
    cleared = make_sr(film, scored(for_diagnostic_use=True))
    assert "NOT FOR DIAGNOSTIC USE" not in cleared.SeriesDescription
    assert not [text for _, text in texts(cleared) if "DIAGNOSTIC" in text]


def test_a_film_without_optional_patient_attributes_still_gets_its_result() -> None:
    bare = dx_film()
    del bare.PatientBirthDate, bare.PatientSex, bare.StudyID, bare.ReferringPhysicianName
    ds = make_sr(bare, scored())
    assert ds.StudyInstanceUID == bare.StudyInstanceUID and sr_decisions(ds)["Viral Pneumonia"] is True


def test_read_sr_carries_the_reader_the_label_and_what_the_model_said(film: Dataset) -> None:
    series_uid, instance_uid = generate_uid(), generate_uid()
    ds = reread(
        read_sr(
            film,
            scored(),
            reader_label="Covid",
            reader_name="Alice Smith",
            read_version=2,
            series_uid=series_uid,
            instance_uid=instance_uid,
        )
    )
    assert (ds.SOPClassUID, ds.StudyInstanceUID, ds.SOPInstanceUID) == (
        Comprehensive3DSRStorage,
        film.StudyInstanceUID,
        instance_uid,
    )
    found = texts(ds)
    assert ("Person Observer Name", "Alice Smith^") in found
    assert ("Observer Type", "121006", "Person") in codes_in(ds)
    assert sr_decisions(ds) == {"Covid": True, "Viral Pneumonia": False}  # the reader, not the model
    assert sr_findings(ds) == {}  # probabilities belong to the model's SR
    model = [text for name, text in found if name == "Model result"]
    assert model and "said Viral Pneumonia" in model[0] and "P(Viral Pneumonia)=0.677" in model[0]
    assert ("Comment", "Read: Covid (version 2)") in found


def test_an_indeterminate_read_claims_nothing(film: Dataset) -> None:
    ds = reread(
        read_sr(
            film,
            scored(),
            reader_label="indeterminate",
            reader_name="Smith^Alice",
            read_version=1,
            series_uid=generate_uid(),
            instance_uid=generate_uid(),
        )
    )
    assert sr_decisions(ds) == {}
    assert {(name, value) for name, value, _ in codes_in(ds) if name in THREE} == {
        ("Covid", "373068000"),
        ("Viral Pneumonia", "373068000"),
    }
    with pytest.raises(ValueError, match="read label"):
        read_sr(
            film,
            scored(),
            reader_label="Cat",
            reader_name="Smith^Alice",
            read_version=1,
            series_uid=generate_uid(),
            instance_uid=generate_uid(),
        )


@pytest.mark.parametrize("for_diagnostic_use", [False, True])
def test_overlay_sc_round_trips_its_pixels_in_the_films_study(film: Dataset, for_diagnostic_use: bool) -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    series_uid, instance_uid = generate_uid(), generate_uid()
    ds = reread(
        overlay_sc(film, rgb, series_uid=series_uid, instance_uid=instance_uid, for_diagnostic_use=for_diagnostic_use)
    )
    assert ds.SOPClassUID == SecondaryCaptureImageStorage and ds.PhotometricInterpretation == "RGB"
    assert (ds.StudyInstanceUID, ds.PatientID, ds.AccessionNumber) == (film.StudyInstanceUID, "PAT4242", "ACC4242")
    assert (ds.SeriesInstanceUID, ds.SOPInstanceUID) == (series_uid, instance_uid)
    assert ds.pixel_array.shape == (48, 64, 3)
    np.testing.assert_array_equal(ds.pixel_array, rgb)
    assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == film.SOPInstanceUID
    assert ("NOT FOR DIAGNOSTIC USE" in ds.SeriesDescription) is not for_diagnostic_use
    assert list(ds.PatientOrientation) == list(film.PatientOrientation)
    with pytest.raises(ValueError, match="uint8"):
        overlay_sc(film, rgb.astype(np.float32), series_uid=series_uid, instance_uid=instance_uid)


DSRDUMP = shutil.which("dsrdump")  # Debian's dcmtk: /usr/bin/dsrdump


@pytest.mark.skipif(DSRDUMP is None, reason="DCMTK's dsrdump is not installed (Debian: apt-get install dcmtk)")
def test_dcmtk_reads_both_srs(film: Dataset, tmp_path: Path) -> None:
    result = result_sr(film, scored(), series_uid=generate_uid(), instance_uid=generate_uid())
    read = read_sr(
        film,
        scored(),
        reader_label="Normal",
        reader_name="José García",  # not ASCII: the SR says its character set (UTF-8)
        read_version=1,
        series_uid=generate_uid(),
        instance_uid=generate_uid(),
    )
    for name, ds in (("result.dcm", result), ("read.dcm", read)):
        path = tmp_path / name
        path.write_bytes(encode(ds))
        command = [DSRDUMP, "+U8", "+Pl", str(path)]
        done = subprocess.run(command, capture_output=True, encoding="utf-8", errors="replace", timeout=30, check=False)
        assert done.returncode == 0, done.stderr
        assert all(name in done.stdout for name in THREE)
        assert "Imaging Measurement Report" in done.stdout
    assert "José García" in done.stdout  # the read, dumped last
