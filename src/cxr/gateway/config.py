"""The gateway's settings: who may send, where results go, which films are scored. From `cxr serve` options or a
YAML file (`--dicom-config`); every bad value is a one-line error naming the setting."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cxr.errors import CxrError

AE_TITLE = re.compile(r"^[ -~]{1,16}$")  # 16 printable ASCII characters (DICOM PS3.5 AE VR), no backslash below
RADIOGRAPH_MODALITIES = ("CR", "DX")


def check_ae_title(title: str) -> str:
    title = title.strip()
    if not AE_TITLE.match(title) or "\\" in title:
        raise ValueError(f"AE title {title!r} must be 1-16 printable ASCII characters without a backslash")
    return title


class Peer(BaseModel):
    """An AE allowed to send: `AE@host` (host: an address or name; `*` or no host: any host)."""

    model_config = ConfigDict(frozen=True)
    ae_title: str
    host: str | None = None

    @classmethod
    def parse(cls, text: str) -> Peer:
        title, _, host = text.partition("@")
        return cls(ae_title=check_ae_title(title), host=None if host in ("", "*") else host.strip())


class Destination(BaseModel):
    """Where results are sent: a DICOM AE (`AE@host:port`, C-STORE) or a DICOMweb service (an http(s) URL, STOW-RS)."""

    model_config = ConfigDict(frozen=True)
    kind: Literal["dimse", "dicomweb"]
    ae_title: str | None = None
    host: str | None = None
    port: int | None = None
    url: str | None = None
    username: str | None = None  # DICOMweb basic auth; the password comes from $CXR_DICOMWEB_PASSWORD, never a file
    name: str = ""

    @classmethod
    def parse(cls, text: str, username: str | None = None) -> Destination:
        text = text.strip()
        if text.startswith(("http://", "https://")):
            return cls(kind="dicomweb", url=text.rstrip("/"), username=username, name=text)
        match = re.match(r"^([^@]+)@([^:@]+):(\d{1,5})$", text)
        if not match or not 0 < int(match.group(3)) < 65536:
            raise CxrError(f"--send-to {text!r}: give AE@host:port (C-STORE) or an http(s):// DICOMweb URL (STOW-RS)")
        title, host, port = match.groups()
        try:
            title = check_ae_title(title)
        except ValueError as e:
            raise CxrError(f"--send-to {text!r}: {e}") from None
        return cls(kind="dimse", ae_title=title, host=host, port=int(port), name=text)


class FrontalRules(BaseModel):
    """Which received films are chest frontals the model may score; the others are kept and listed, not scored."""

    model_config = ConfigDict(extra="forbid")
    modalities: list[str] = Field(default_factory=lambda: list(RADIOGRAPH_MODALITIES))
    view_positions: list[str] = Field(default_factory=lambda: ["PA", "AP"])  # (0018,5101)
    allow_missing_view: bool = True  # many CR films carry no ViewPosition: score them (the guard still checks)
    excluded_image_types: list[str] = Field(default_factory=lambda: ["LOCALIZER", "DERIVED\\SECONDARY"])
    body_parts: list[str] = Field(default_factory=lambda: ["CHEST", ""])  # (0018,0015); "": not given


class GatewayConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    port: int = Field(ge=1, le=65535)
    ae_title: str = "CXR"
    host: str = "127.0.0.1"
    allow: list[Peer] = Field(default_factory=list)  # empty: refuse every sender (closed by default)
    send_to: list[Destination] = Field(default_factory=list)
    send_reads: bool = False  # a reader's read goes back as a second SR
    send_overlay: bool = False  # the Grad-CAM overlay as a Secondary Capture image
    for_diagnostic_use: bool = False  # False: every result says "not for diagnostic use"
    frontal: FrontalRules = Field(default_factory=FrontalRules)
    spool: Path | None = None  # received instances before scoring; default: beside the reading-room database
    retry_seconds: float = Field(5.0, gt=0)  # first retry of a failed send; doubles up to max_retry_seconds
    max_retry_seconds: float = Field(600.0, gt=0)
    pull: str | None = None  # a DICOMweb URL to poll for new CR/DX instances (a PACS that cannot push)
    dicomweb_username: str | None = None  # for pull and STOW-RS (basic auth); the password: $CXR_DICOMWEB_PASSWORD
    pull_seconds: float = Field(10.0, gt=0)

    _check_title = field_validator("ae_title")(lambda cls, v: check_ae_title(v))


def load_gateway_config(path: Path | None, **overrides) -> GatewayConfig:
    """The YAML file (if any) with the command line's options on top; one line per mistake."""
    values: dict = {}
    if path is not None:
        try:
            values = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise CxrError(f"--dicom-config {path}: cannot read it ({type(e).__name__})") from None
        if not isinstance(values, dict):
            raise CxrError(f"--dicom-config {path}: expected a mapping of settings, such as `ae_title: CXR`")
    values.update({k: v for k, v in overrides.items() if v not in (None, [], ())})
    values["allow"] = [Peer.parse(v) if isinstance(v, str) else v for v in values.get("allow", [])]
    user = values.get("dicomweb_username")
    values["send_to"] = [Destination.parse(v, user) if isinstance(v, str) else v for v in values.get("send_to", [])]
    try:
        return GatewayConfig(**values)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        raise CxrError(f"DICOM gateway setting {where}: {first['msg']}") from None
    except ValueError as e:
        raise CxrError(f"DICOM gateway: {e}") from None
