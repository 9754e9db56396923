"""fgsync keeps Huawei Cloud FunctionGraph functions in step with the code on your disk.

The command line (`fgsync`, see `fgsync.cli`) is the product; the modules behind it are documented in
docs/architecture.md.
"""

from __future__ import annotations

__version__ = "0.1.0"
