"""`python -m sentiops.cli`: the `sentiops` command (what `sentiops drift check` runs in the
drift environment when it has no `sentiops` script)."""

from sentiops.cli.main import app

app()
