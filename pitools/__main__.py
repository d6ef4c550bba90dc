"""``python -m pitools`` — the same as the ``pitools`` command."""

import sys

from .cli import main

sys.exit(main())
