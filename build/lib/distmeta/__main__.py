"""``python -m distmeta ...``: the CLI, as Ray jobs run it on a cluster."""

from distmeta.cli import run

run()
