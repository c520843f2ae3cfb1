"""`cxr serve`: a FastAPI app with a web page and a JSON API over one model bundle (no Lightning import)."""

from cxr.extras import require

require("serve")  # FastAPI, uvicorn, SQLAlchemy...: not installed, a one-line error naming cxr[serve]
from cxr.serve.app import create_app, serve  # noqa: E402

__all__ = ["create_app", "serve"]
