"""`python -m cxr.cli ...`: the same entry point as the `cxr` script (and `torchrun ... -m cxr.cli train`)."""

from cxr.cli import main

if __name__ == "__main__":
    main()
