"""Synthetic DICOM radiographs for the gateway tests (pydicom; no real patient data): a DX or CR film with a
chest-like gray image, the identifiers a modality sends, and knobs for the cases the gateway must handle."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    generate_uid,
)

SOP_CLASS = {"DX": DigitalXRayImageStorageForPresentation, "CR": ComputedRadiographyImageStorage}


def chest_pixels(size: int = 128, seed: int = 0) -> np.ndarray:
    """A dark field with two bright lung-shaped ellipses and noise: enough structure for the model to score."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    lungs = ((x - 0.32) ** 2 / 0.03 + (y - 0.5) ** 2 / 0.12 < 1) | ((x - 0.68) ** 2 / 0.03 + (y - 0.5) ** 2 / 0.12 < 1)
    image = np.where(lungs, 700, 2600) + rng.normal(0, 120, (size, size))
    return np.clip(image, 0, 4095).astype(np.uint16)


def dx_film(
    *,
    modality: str = "DX",
    view: str | None = "PA",
    study_uid: str | None = None,
    sop_uid: str | None = None,
    accession: str = "ACC0001",
    patient_id: str = "PAT0001",
    image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY"),
    pixels: np.ndarray | None = None,
    seed: int = 0,
) -> Dataset:
    """One film as a modality would send it (MONOCHROME2, explicit VR little endian; 12 bits stored, or 8 for uint8
    `pixels`)."""
    pixels = chest_pixels(seed=seed) if pixels is None else pixels
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = SOP_CLASS[modality]
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid or generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SOP_CLASS[modality]
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = modality
    ds.ImageType = list(image_type)
    if view is not None:
        ds.ViewPosition = view
    ds.PatientName = "Test^Synthetic"
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.AccessionNumber = accession
    ds.StudyDate, ds.StudyTime = "20261204", "093000"
    ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "1", 1, 1
    ds.ReferringPhysicianName = ""
    ds.Manufacturer = "cxr-tests"
    ds.BodyPartExamined = "CHEST"
    ds.PatientOrientation = ["L", "F"]
    if modality == "DX":
        ds.PresentationIntentType = "FOR PRESENTATION"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    if pixels.dtype == np.uint8:  # a film made from an 8-bit image (PNG/JPEG): its gray levels as they are
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    else:
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
        pixels = pixels.astype(np.uint16)
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.tobytes()
    return ds


def encode(ds: Dataset) -> bytes:
    """The Part 10 file's bytes."""
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def write(ds: Dataset, path: Path) -> Path:
    path.write_bytes(encode(ds))
    return path
