"""``python -m pitools`` — the same as the ``pitools`` command."""

import sys

from pitools.cli import main

sys.exit(main())
