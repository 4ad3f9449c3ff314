"""``python -m runwhen_operator.emulator``."""

from __future__ import annotations

import sys

from runwhen_operator.emulator.cli import main

if __name__ == "__main__":
    sys.exit(main())
