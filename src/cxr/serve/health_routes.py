"""GET /v1/health: the model's health over the films served (`cxr monitor`'s report, per week, against the bundle's
own figures), for the worklist's "model health" section; a drift test that fires is also a warning in the log."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from fastapi import Depends, FastAPI

from cxr.readingroom import ReadingRoom
from cxr.readingroom.monitor import monitor, table_rows
from cxr.serve.auth import Principal, principal
from cxr.serve.reading_routes import call
from cxr.serve.responses import documented

CACHE_SECONDS = 60.0  # at most once a minute (it reads the baseline and the shown windows)
SHOWN_WINDOWS = 8
log = logging.getLogger(__name__)


class HealthMonitor:
    """The latest report, recomputed when older than CACHE_SECONDS; each new alert line is logged once."""

    def __init__(self, room: ReadingRoom, metrics: dict[str, Any], classes: list[str], period: str = "week"):
        self.room, self.metrics, self.classes, self.period = room, metrics, classes, period
        self._lock = threading.Lock()
        self._at = -float("inf")
        self._details: dict[str, Any] = {}
        self._logged: set[str] = set()

    def details(self) -> dict[str, Any]:
        with self._lock:
            if time.monotonic() - self._at > CACHE_SECONDS:
                self._details, self._at = self._compute(), time.monotonic()
            return self._details

    def _compute(self) -> dict[str, Any]:
        report = monitor(self.room, self.metrics, self.classes, period=self.period, recent=SHOWN_WINDOWS)
        alerts = report.alert_lines()
        for line in alerts:
            if line not in self._logged:
                log.warning(line)
                self._logged.add(line)
        return {
            "period": report.period,
            "family_false_alarm_rate": report.alpha,
            "reference": report.reference.source,
            "alerts": alerts,
            "windows": table_rows(report)[-SHOWN_WINDOWS:],
        }


def add_health_routes(app: FastAPI, health: HealthMonitor) -> None:
    @app.get("/v1/health", tags=["reading room"], **documented())
    def model_health(who: Principal = Depends(principal)) -> dict[str, Any]:
        """The model's health: per week, the predicted-class mix, expected accuracy, the readers' agreement and the
        guard's flag rate, with drift tests at a 1 % family false-alarm rate per week; `alerts` names what fired."""
        return {"status": "alert" if (d := call(health.details))["alerts"] else "ok", "details": d}
