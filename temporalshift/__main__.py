"""``python -m temporalshift`` is the ``tsm`` command."""

from temporalshift.cli import run

run()
