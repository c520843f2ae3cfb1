"""The web service: a page for people, a small JSON API for programs, one loaded model behind both.

Uploads are decoded by `cxr.data.images.load_grayscale` (the decoder training used) and predicted by the bundle's
backend (ONNX Runtime when exported, else PyTorch), in a bounded worker pool. No Lightning import here.
"""

from __future__ import annotations

import io
import ipaddress
import json
import logging
import os
import socket
import time
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np
from fastapi import Depends, FastAPI, File, HTTPException, Query, UploadFile
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, PrivateAttr
from sqlalchemy.exc import SQLAlchemyError

from cxr.data.images import ImageInfo, ImageReadError, describe_image, load_grayscale
from cxr.errors import CxrError
from cxr.explain.cam import CamExplainer
from cxr.explain.overlay import overlay_rgb
from cxr.inference.bundle import Bundle
from cxr.inference.onnx_export import weights_digest
from cxr.inference.predict import apply_temperature, decide
from cxr.readingroom import ReadingRoom
from cxr.readingroom.db import sqlite_url
from cxr.readingroom.service import DB_FILE, ModelFacts, database_has_keys
from cxr.serve.admin_routes import add_admin_routes
from cxr.serve.auth import (
    API_KEY_ENV,
    HOW_TO_ENABLE,
    Auth,  # noqa: F401
    AuthMiddleware,
    Principal,
    install_openapi,
    principal,
)
from cxr.serve.health_routes import HealthMonitor, add_health_routes
from cxr.serve.limits import BodySizeLimit, FailedKeyLimiter, InferencePool
from cxr.serve.reading_routes import ReadingService, add_reading_routes, study_links
from cxr.serve.responses import documented, install_allow_header
from cxr.version import __version__

log = logging.getLogger(__name__)


class ModelRef(BaseModel):
    id: str  # the run directory's name
    version: str  # first 12 hex digits of the weights' sha256: changes whenever the weights do
    architecture: str


class Prediction(BaseModel):
    predicted: str
    probabilities: dict[str, float]
    threshold: float | None
    study_id: str | None = None  # the reading room's record of this prediction (GET /v1/studies/{id})
    model: ModelRef
    backend: str
    filename: str | None
    seconds: float
    # the input guard (None for a model saved before cxr 0.6): score over 1 = unlike the films the model trained on
    ood_score: float | None = None
    in_distribution: bool | None = None
    warning: str | None = None  # plain words for the reader when the film is unlike the training films
    # for the reading room only (not in the answer): why the guard flagged the film, and what it read
    _guard_reason: str | None = PrivateAttr(None)
    _input_stats: dict[str, Any] | None = PrivateAttr(None)


class ModelInfo(BaseModel):
    model: ModelRef
    classes: list[str]
    image_size: int
    threshold: float | None
    backend: str
    explain: bool  # whether POST /v1/explain can answer (Grad-CAM installed)
    cxr_version: str | None
    created: str | None
    num_parameters: int | None
    metrics: dict[str, dict[str, Any]]  # scalar figures per metrics.json section ("training", "test", ...)


def read_metrics(run_dir: Path) -> dict[str, Any]:
    """metrics.json, or {} when it is missing or unreadable (the service runs without it)."""
    try:
        sections = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}
    return sections if isinstance(sections, dict) else {}


def metrics_summary(run_dir: Path) -> dict[str, dict[str, Any]]:
    """The scalar figures of each metrics.json section (nested tables and intervals are left to the file)."""
    sections = read_metrics(run_dir)
    return {
        name: {k: v for k, v in section.items() if isinstance(v, (int, float, str, bool)) or v is None}
        for name, section in sections.items()
        if isinstance(section, dict)
    }


def describe_upload(stream: BinaryIO, filename: str | None) -> ImageInfo:
    """The upload's own size, mode and colour for the input guard; unreadable -> 415, as decoding would say."""
    stream.seek(0)
    try:
        return describe_image(stream, name=filename or "upload")
    except ImageReadError as e:
        raise HTTPException(415, str(e)) from None


def input_stats(info: ImageInfo, image: np.ndarray) -> dict[str, Any]:
    """What the guard's cheap checks read, kept per film for `cxr monitor`: the file's size, mode and colourfulness,
    and the decoded film's mean and spread of gray levels."""
    return {
        "width": info.width,
        "height": info.height,
        "mode": info.mode,
        "colourfulness": round(float(info.colourfulness), 3),
        "pixel_mean": round(float(image.mean()), 3),
        "pixel_std": round(float(image.std()), 3),
    }


def decode_upload(stream: BinaryIO, filename: str | None, size: int | None) -> np.ndarray:
    """Decode with THE decoder; unreadable -> 415, absurd dimensions (decompression bomb) -> 400."""
    stream.seek(0)
    try:
        return load_grayscale(stream, size, name=filename or "upload")
    except ImageReadError as e:
        raise HTTPException(400 if "out of range" in str(e) else 415, str(e)) from None


def grad_cam_overlay(
    explainer: CamExplainer, stream: BinaryIO, filename: str | None, image_size: int, target: str | None = None
) -> np.ndarray:
    """The film at its own size with the Grad-CAM heat map over it, (H, W, 3) uint8; the model sees exactly the
    pixels a prediction does. For /v1/explain and the DICOM gateway's Secondary Capture."""
    model_input = decode_upload(stream, filename, image_size)
    shown = decode_upload(stream, filename, None)
    (e,) = explainer.explain_arrays([shown], target, model_inputs=model_input[None])
    return overlay_rgb(e.image, e.heatmap)


def _load_explainer(bundle: Bundle):
    """Grad-CAM for the bundle's model; None (a model Grad-CAM cannot hook) leaves /v1/explain answering 501."""
    try:
        return CamExplainer(bundle)
    except Exception as e:  # a model Grad-CAM cannot hook must not stop predictions from being served
        log.warning("Grad-CAM unavailable for this model: %s", e)
        return None


def _png(rgb_or_gray: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb_or_gray).save(buf, format="PNG")
    return buf.getvalue()


def create_app(
    run_dir: str | Path,
    *,
    backend: str = "auto",
    max_upload_mb: float = 20.0,
    api_key: str | None = None,
    workers: int = 1,
    max_pending: int = 64,
    explain: bool = True,
    db: str | None = None,
    store_images: bool = True,
    watch: str | Path | None = None,
    exposed: bool = False,
    insecure_no_auth: bool = False,
    failed_keys: tuple[int, float] = (10, 60.0),
    dicom: Any = None,
) -> FastAPI:
    """Build the app for one run. `api_key` defaults to $CXR_API_KEY; with it, or once a reader key exists, every /v1
    route needs a key (X-API-Key or X-Reader-Key; serve/auth.py). `exposed` (listening beyond loopback) makes a key
    required even before one exists, unless `insecure_no_auth`. `failed_keys`: (wrong keys, seconds) a client may
    send before it gets 429. `dicom`: a `cxr.gateway.config.GatewayConfig` starts the DICOM gateway beside the API.

    Every prediction is recorded in the reading room: `db` (a SQLAlchemy URL, default SQLite at RUN/reading.db),
    images in a content-addressed store unless `store_images` is False; `watch` ingests films dropped in a folder.
    """
    bundle = Bundle.load(run_dir, backend=backend)
    meta = bundle.meta
    if bundle.guard is None:
        log.warning(
            "%s has no input guard: films unlike its training films are not flagged (`cxr run guard %s` fits one)",
            run_dir,
            run_dir,
        )
    key = (api_key if api_key is not None else os.environ.get(API_KEY_ENV)) or None  # empty: no key
    ref = ModelRef(
        id=bundle.run_dir.resolve().name,
        version=weights_digest(bundle.model.state_dict())[:12],
        architecture=meta.model,
    )
    explainer = _load_explainer(bundle) if explain else None
    pool = InferencePool(workers=workers, max_pending=max_pending)
    info = ModelInfo(
        model=ref,
        classes=list(meta.classes),
        image_size=meta.image_size,
        threshold=meta.threshold,
        backend=bundle.backend,
        explain=explainer is not None,
        cxr_version=bundle.info.get("cxr_version"),
        created=bundle.info.get("created"),
        num_parameters=bundle.info.get("num_parameters"),
        metrics=metrics_summary(bundle.run_dir),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        reading.start()
        if gateway is not None:
            gateway.start()
        yield
        if gateway is not None:
            gateway.stop()
        pool.shutdown()
        reading.stop()

    app = FastAPIOffline(  # FastAPI whose /docs and /redoc load Swagger UI from the package, not a CDN
        title="cxr",
        version=__version__,
        description=f"Chest X-ray classification with model {ref.id} ({ref.architecture}, version {ref.version}).",
        lifespan=lifespan,
    )
    room = ReadingRoom.for_run(bundle.run_dir, db, store_images=store_images)
    auth = Auth(room, key, exposed=exposed, insecure_no_auth=insecure_no_auth, limiter=FailedKeyLimiter(*failed_keys))
    app.add_middleware(BodySizeLimit, max_bytes=int(max_upload_mb * 2**20))
    app.add_middleware(AuthMiddleware, auth=auth)  # added last, runs first: no key, no body read
    app.state.bundle, app.state.pool, app.state.info, app.state.auth = bundle, pool, info, auth
    if auth.warning() is not None:
        log.warning(auth.warning())

    def predict_one(upload: UploadFile) -> Prediction:
        t0 = time.perf_counter()
        info = describe_upload(upload.file, upload.filename)
        image = decode_upload(upload.file, upload.filename, meta.image_size)
        logits, verdict = bundle.logits_and_guard(image[None], [info])
        probs = apply_temperature(logits, meta.temperature)
        predicted = meta.classes[int(decide(probs, meta.threshold)[0])]
        guard = {}
        if verdict is not None:
            guard = dict(
                ood_score=float(verdict.scores[0]),
                in_distribution=bool(verdict.in_distribution[0]),
                warning=verdict.warning(0),
            )
        answer = Prediction(
            predicted=predicted,
            probabilities={c: float(p) for c, p in zip(meta.classes, probs[0])},
            threshold=meta.threshold,
            model=ref,
            backend=bundle.backend,
            filename=upload.filename,
            seconds=round(time.perf_counter() - t0, 4),
            **guard,
        )
        answer._input_stats = input_stats(info, image)
        if verdict is not None and not verdict.in_distribution[0]:
            answer._guard_reason = verdict.reasons[0]
        return answer

    def explain_one(upload: UploadFile, target: str | None) -> bytes:
        return _png(grad_cam_overlay(explainer, upload.file, upload.filename, meta.image_size, target))

    model_facts = ModelFacts(ref.id, ref.version, ref.architecture, list(meta.classes), meta.threshold)
    reading = app.state.reading = ReadingService(room, model_facts, predict_one, Path(watch) if watch else None)
    add_reading_routes(app, reading)
    gateway = app.state.gateway = None
    if dicom is not None:
        from cxr.serve.dicom import add_gateway_routes, build_gateway  # optional extra cxr[dicom] (--dicom-port)

        gateway = app.state.gateway = build_gateway(dicom, reading, bundle.run_dir, meta.image_size, explainer)
        add_gateway_routes(app, gateway)
    add_health_routes(app, HealthMonitor(room, read_metrics(bundle.run_dir), list(meta.classes)))
    add_admin_routes(app, room)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return resources.files("cxr.serve").joinpath("static/index.html").read_text(encoding="utf-8")

    app.mount("/static", StaticFiles(packages=[("cxr.serve", "static")]), name="static")

    @app.get("/healthz", tags=["service"])
    def healthz() -> dict[str, Any]:
        """Liveness: the model is loaded. Never needs a key. `auth`: whether /v1 needs one now; `warning`: set while
        anyone on the network may read the films (--insecure-no-auth), and shown on the page."""
        try:
            required, warning = auth.required(), auth.warning()
        except (SQLAlchemyError, OSError):  # the database is down: the model still answers; say keys are needed
            required, warning = True, None
        return {
            "status": "ok",
            "model": ref.model_dump(),
            "auth": required,
            "warning": warning,
            "pending": pool.pending,
        }

    @app.get("/v1/model", response_model=ModelInfo, tags=["model"], **documented())
    def model_info(who: Principal = Depends(principal)) -> ModelInfo:
        """Classes, image size, decision threshold, backend and the run's evaluation figures."""
        return info

    predicted = documented(400, 413, 415)
    predicted["responses"][200] = {"description": "the prediction", "links": study_links("$response.body#/study_id")}

    @app.post("/v1/predict", response_model=Prediction, tags=["model"], **predicted)
    async def predict(
        file: UploadFile = File(..., description="a chest X-ray: PNG, JPEG, BMP, TIFF or DICOM"),
        who: Principal = Depends(principal),
    ):
        """Class probabilities and the predicted class for one uploaded X-ray (recorded in the reading room)."""
        return await pool.run(reading.predict, file, "upload", who.actor())

    async def explain_endpoint(
        file: UploadFile = File(..., description="a chest X-ray: PNG, JPEG, BMP, TIFF or DICOM"),
        target: str | None = Query(None, description="class to explain (default: the predicted one)"),
        who: Principal = Depends(principal),
    ) -> Response:
        """Grad-CAM overlay (PNG) showing which regions drove the prediction."""
        if explainer is None:
            raise HTTPException(501, "Grad-CAM is not available in this installation (cxr.explain is missing)")
        return Response(await pool.run(explain_one, file, target), media_type="image/png")

    explain_doc = documented(400, 413, 415, 501)
    explain_doc["responses"][200] = {
        "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
        "description": "the X-ray with a Grad-CAM heatmap",
    }
    explain_endpoint.__annotations__["target"] = Literal[tuple(meta.classes)] | None  # the schema lists the classes
    app.post("/v1/explain", tags=["model"], response_class=Response, **explain_doc)(explain_endpoint)
    install_openapi(app, auth)
    install_allow_header(app)
    return app


def serve(
    run_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, insecure_no_auth: bool = False, **options: Any
) -> None:
    """Run the app with uvicorn; `limit_concurrency` answers 503 to connections beyond what the pool can queue.

    Beyond loopback only with authentication on (an API key or a reader key), or `insecure_no_auth`.
    """
    import uvicorn

    _check_can_listen(host, port)  # before loading the model; uvicorn would log several lines and exit 1 or 3
    if options.get("dicom") is not None:
        _check_can_listen(options["dicom"].host, options["dicom"].port, "--dicom-port")
    exposed = not is_loopback(host)
    if exposed and not insecure_no_auth:
        _check_auth_on(run_dir, host, options.get("api_key"), options.get("db"))
    app = create_app(run_dir, exposed=exposed, insecure_no_auth=insecure_no_auth, **options)
    pool: InferencePool = app.state.pool
    uvicorn.run(app, host=host, port=port, limit_concurrency=pool.max_pending + 16, log_level="info")


def _check_can_listen(host: str, port: int, flag: str = "--port") -> None:
    """Bind once and let go: a port in use or an address not on this machine is a one-line error."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise CxrError(f"--host {host!r} is not an address of this machine ({e.strerror}); try 127.0.0.1") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT is not "in use"
        try:
            probe.bind(address)
        except OSError as e:
            raise CxrError(f"cannot listen on {host}:{port} ({e.strerror}); pick another {flag} or --host") from None


def is_loopback(host: str) -> bool:
    """Whether every address `host` names is on this machine only (127.0.0.0/8, ::1); 0.0.0.0 and :: are not."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return False
    return all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)


def _check_auth_on(run_dir: str | Path, host: str, api_key: str | None, db: str | None) -> None:
    """Refuse to listen beyond loopback without a key, in one line (as Jupyter and Redis's protected mode do)."""
    if api_key or os.environ.get(API_KEY_ENV):
        return
    if database_has_keys(db or sqlite_url(Path(run_dir) / DB_FILE)):
        return
    raise CxrError(
        f"refusing to listen on {host} without authentication: anyone on the network could see every "
        f"film; {HOW_TO_ENABLE.replace('RUN', str(run_dir))}, or pass --insecure-no-auth on a trusted "
        "network"
    )
