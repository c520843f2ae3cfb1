"""`cxr serve --dicom-port`: the DICOM gateway started beside the web service, scoring through the same recording
predictor as uploads (so a film from the PACS is guarded, listed and monitored exactly like one sent to /v1/predict).
Imported only when the gateway is on: pynetdicom and highdicom are the optional extra cxr[dicom]."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import Depends, FastAPI, UploadFile

from cxr.extras import require
from cxr.gateway.config import GatewayConfig
from cxr.gateway.results import AlgorithmFacts
from cxr.gateway.service import SPOOL, Gateway
from cxr.readingroom.access_log import Actor
from cxr.readingroom.db import sqlite_path
from cxr.serve.app import grad_cam_overlay
from cxr.serve.auth import Principal, admin
from cxr.serve.reading_routes import ReadingService, call
from cxr.serve.responses import documented
from cxr.version import __version__

require("dicom")  # a one-line error naming cxr[dicom] rather than an ImportError from deep inside


def build_gateway(
    config: GatewayConfig, reading: ReadingService, run_dir: Path, image_size: int, explainer=None
) -> Gateway:
    model = reading.model

    def score(data: bytes, filename: str, sender: str) -> str:
        upload = UploadFile(io.BytesIO(data), filename=filename)
        actor = Actor(f"dicom {sender}"[:100], "service", None)
        return reading.predict(upload, source="dicom", actor=actor).study_id

    def overlay(data: bytes, filename: str) -> np.ndarray | None:
        return None if explainer is None else grad_cam_overlay(explainer, io.BytesIO(data), filename, image_size)

    db_file = sqlite_path(reading.room.url)
    spool = (db_file.parent if db_file is not None else run_dir) / SPOOL
    algorithm = AlgorithmFacts(model.id, model.version, model.architecture, __version__)
    gateway = Gateway(config, reading.room, score, algorithm, spool, overlay)
    reading.after_read = gateway.on_read
    return gateway


def add_gateway_routes(app: FastAPI, gateway: Gateway) -> None:
    @app.get("/v1/gateway", tags=["admin"], **documented(key="admin"))
    def gateway_status(who: Principal = Depends(admin)) -> dict[str, Any]:
        """The DICOM gateway: listening or not, instances received by status (and why the last ones were not
        scored), results sent and waiting for the PACS with the last error."""
        return call(gateway.status)
