"""`cxr serve`: the model behind a web page, the reading room's worklist and a JSON API."""

from __future__ import annotations

from pathlib import Path

import typer

from cxr.cli.reading import SERVE_DB_HELP
from cxr.errors import CxrError


def register(app: typer.Typer) -> None:
    app.command()(serve)


def serve(
    run: Path = typer.Argument(..., help="run directory (model bundle)"),
    host: str = typer.Option(
        "127.0.0.1",
        help="address to listen on; beyond loopback (0.0.0.0: the whole network) "
        "only with a key: $CXR_API_KEY or `cxr readers add`",
    ),
    port: int = typer.Option(8000, min=1, max=65535, help="TCP port to listen on"),
    backend: str = typer.Option("auto", help="auto | onnx | torch"),
    max_upload_mb: float = typer.Option(20.0, min=0.001, max=100_000, help="larger uploads get 413"),
    workers: int = typer.Option(1, min=1, help="inference threads"),
    max_pending: int = typer.Option(64, min=1, help="requests allowed to wait for a worker; more get 503"),
    db: str | None = typer.Option(None, help=SERVE_DB_HELP),
    store_images: bool = typer.Option(
        True,
        "--store-images/--no-store-images",
        help="keep each film's bytes in a content-addressed store beside the database (off: hashes only)",
    ),
    watch: Path | None = typer.Option(None, help="record every film that appears in this folder, as uploads are"),
    dicom_port: int | None = typer.Option(
        None, min=1, max=65535, help="also run a DICOM Storage SCP on this port (films from the PACS; cxr[dicom])"
    ),
    ae_title: str | None = typer.Option(None, help="the gateway's AE title (default CXR)"),
    allow: list[str] = typer.Option(
        [], help="AE@host allowed to send films (repeat; AE alone: any host); nobody else is accepted"
    ),
    send_to: list[str] = typer.Option(
        [], help="where results go: AE@host:port (C-STORE) or a DICOMweb URL (STOW-RS); repeatable"
    ),
    pull: str | None = typer.Option(None, help="a DICOMweb URL to poll for new CR/DX films (a PACS that cannot push)"),
    dicom_config: Path | None = typer.Option(
        None, help="YAML with the gateway's settings (frontal rules, retries, send_reads, ...; docs: Connect to a PACS)"
    ),
    insecure_no_auth: bool = typer.Option(
        False,
        "--insecure-no-auth",
        help="listen beyond loopback without any key "
        "(a trusted lab network only): everyone who can reach it sees every film",
    ),
) -> None:
    """Serve the model: a web page at /, the worklist at /worklist, the JSON API under /v1 (docs at /docs).
    Every prediction is recorded (reading room). $CXR_API_KEY or a reader key (`cxr readers add`) turns keys on;
    without one, only loopback is served."""
    from cxr.serve.app import serve as run_server

    if max_pending < workers:
        raise CxrError("--max-pending must be at least --workers")
    dicom = None
    if dicom_port is not None or dicom_config is not None:
        from cxr.gateway.config import load_gateway_config

        dicom = load_gateway_config(
            dicom_config, port=dicom_port, ae_title=ae_title, allow=allow, send_to=send_to, pull=pull, host=host
        )
        if not dicom.allow and dicom.pull is None:
            raise CxrError("--dicom-port: no sender is allowed; add --allow AE@host for each modality or PACS")
    run_server(
        run,
        host=host,
        port=port,
        backend=backend,
        max_upload_mb=max_upload_mb,
        workers=workers,
        max_pending=max_pending,
        db=db,
        store_images=store_images,
        watch=watch,
        insecure_no_auth=insecure_no_auth,
        dicom=dicom,
    )
