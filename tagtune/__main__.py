import sys

from tagtune.cli import main

sys.exit(main())
