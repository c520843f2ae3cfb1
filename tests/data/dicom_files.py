"""Write small DICOM files with pydicom for tests (no real patient data needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"


def dicom_dataset(
    arr: np.ndarray,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    window: tuple[float, float] | None = None,
    rescale: tuple[float, float] | None = None,
) -> Dataset:
    """A digital X-ray dataset holding `arr`; `window` is (center, width), `rescale` is (slope, intercept)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DX_FOR_PRESENTATION
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = DX_FOR_PRESENTATION
    ds.Modality = "DX"
    ds.PatientID = "TEST"
    bits = bits_stored or arr.dtype.itemsize * 8
    ds.set_pixel_data(arr, photometric_interpretation=photometric, bits_stored=bits)
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    return ds


def write_dicom(path: Path, arr: np.ndarray, **kwargs) -> Path:
    dicom_dataset(arr, **kwargs).save_as(path, enforce_file_format=True)
    return path
