"""MkDocs hook: the config and CLI reference pages are generated from the code at build time, never committed.

`cxr.docs_reference` renders them from `TrainConfig` and the Typer app, so they say what the code and `--help` say.
"""

from __future__ import annotations

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

GENERATED = {
    "reference/config.md": "config_reference_markdown",
    "reference/cli.md": "cli_reference_markdown",
}


def on_files(files: Files, config: MkDocsConfig) -> Files:
    import cxr.docs_reference as reference

    for uri, render in GENERATED.items():
        files.append(File.generated(config, uri, content=getattr(reference, render)()))
    return files
