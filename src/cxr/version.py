"""cxr's version, in a leaf module: every layer may record it (bundles, reports, tracking) without importing `cxr`."""

__version__ = "0.8.0"
