"""``python -m tagtune.cli`` (the same as ``python -m tagtune`` and the ``tagtune`` script)."""

import sys

from tagtune.cli import main

sys.exit(main())
