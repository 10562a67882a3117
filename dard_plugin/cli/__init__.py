"""The ``dard`` command line (see ``dard --help``)."""

from dard_plugin.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
