"""The `synthembed` command: one subcommand per stage, each a thin call into the library."""

# each module registers its commands on `app`; the import order is the order of `synthembed --help`
from synthembed.cli import stages, embed, refine  # noqa: F401,I001
from synthembed.cli.common import app

__all__ = ["app"]
