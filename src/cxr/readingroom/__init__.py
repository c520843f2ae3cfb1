"""The reading room: every served prediction recorded in a database (SQLite or PostgreSQL via SQLAlchemy 2), a
content-addressed image store, reader keys and append-only reads, and the loop back to training.

`cxr.serve` calls this package; it never imports `cxr.serve`, FastAPI or Lightning.
"""

from cxr.extras import require

require("serve", "sqlalchemy")  # not installed: a one-line error naming cxr[serve]
from cxr.readingroom.service import ReadingRoom  # noqa: E402

__all__ = ["ReadingRoom"]
