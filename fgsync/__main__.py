"""`python -m fgsync`."""

from __future__ import annotations

import sys

from fgsync.cli import main

if __name__ == "__main__":
    sys.exit(main())
