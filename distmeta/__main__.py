"""``python -m distmeta ...``: the CLI, as Ray jobs run it on a cluster."""

import sys

from distmeta.cli import main

sys.exit(main())
