"""`cxr` command line: thin wrappers over the core; user errors print one line and exit with code 2.

One module per command group; each exposes `register(app)`, the only place its commands are attached to the root
app (`root.py`, which also holds `main`, the entry point that turns known errors into one line).
"""

from cxr.cli.root import app, main

__all__ = ["app", "main"]
