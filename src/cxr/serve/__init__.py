"""`cxr serve`: a FastAPI app with a web page and a JSON API over one model bundle (no Lightning import)."""

from cxr.serve.app import create_app, serve

__all__ = ["create_app", "serve"]
