"""`python -m runwhen_operator` is the `runwhen-operator` command."""

import sys

from runwhen_operator.cli import main

sys.exit(main())
