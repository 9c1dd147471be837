"""``python -m promptseg`` runs the command line."""

import sys

from promptseg.cli import main

sys.exit(main())
