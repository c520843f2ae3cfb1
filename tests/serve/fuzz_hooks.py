"""Schemathesis hooks for test_fuzz.py (loaded by the `schemathesis` process through $SCHEMATHESIS_HOOKS): one check
of our own on every response, besides schemathesis's built-in ones.

$CXR_FUZZ_KEYS: the keys that work on the served app, comma-separated; empty when the app needs no key.
"""

from __future__ import annotations

import os

import schemathesis

PATIENT_DATA = ("/v1/",)  # every /v1 route returns patient data, or takes a film


@schemathesis.check
def no_patient_data_without_a_key(ctx, response, case) -> None:
    """While keys exist, a /v1 request that carries none of them gets 401 or 429, never an answer."""
    keys = [k for k in os.environ.get("CXR_FUZZ_KEYS", "").split(",") if k]
    if not keys or not case.operation.path.startswith(PATIENT_DATA):
        return
    headers = response.request.headers
    sent = {headers.get("X-API-Key"), headers.get("X-Reader-Key")}
    if sent & set(keys):
        return
    if response.status_code not in (401, 429):
        raise AssertionError(
            f"{case.method} {case.formatted_path} without a valid key answered {response.status_code}, not 401"
        )
