"""The DICOM gateway: films from the PACS, results back to the PACS (`cxr serve RUN --dicom-port PORT`).

- `scp.py`: a Storage SCP (pynetdicom) that accepts C-ECHO and C-STORE of CR/DX films from allowed AEs, spools each
  instance safely, acknowledges at once and records it once (unique on SOPInstanceUID);
- `intake.py`: scores spooled instances (frontal films by `rules.py`) through the service's recording predictor;
- `sr.py`: each scored film as a DICOM Comprehensive 3D SR (TID 1500), a reader's read as a second one, the Grad-CAM
  overlay as a Secondary Capture image (highdicom);
- `outbox.py`: results wait in the reading-room database and are sent (C-STORE: `scu.py`, or STOW-RS: `dicomweb.py`)
  with back-off until the PACS takes them; each result's UIDs are made once;
- `dicomweb.py`: pull mode for a PACS that cannot push (QIDO-RS for new CR/DX instances, WADO-RS to fetch them).

The gateway sits below `serve/` (which starts it) and calls the reading room and the model through what `serve/`
hands it; it never imports `serve/`. Needs `pip install "cxr[dicom]"`.
"""
