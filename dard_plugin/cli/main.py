"""The ``dard`` command line: one module per command family (``teachers``, ``training``,
``evaluation``, ``demo``), each adding its subcommands and handlers. Heavy imports happen
inside each command, so that ``dard --help`` answers at once."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from typing import Any

from dard_plugin.cli import demo, evaluation, teachers, training
from dard_plugin.cli.common import build_command_parser

FAMILIES = (teachers, training, evaluation, demo)
COMMANDS: dict[str, Callable[[argparse.Namespace], Any]] = {
    name: handler for family in FAMILIES for name, handler in family.COMMANDS.items()
}


def build_parser() -> argparse.ArgumentParser:
    return build_command_parser(*FAMILIES)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    logging.getLogger("art").setLevel(logging.WARNING)  # ART logs its data path at import
    if args.quiet:
        logging.getLogger("auto-attack").setLevel(logging.WARNING)
    try:
        _run(args)
    except BrokenPipeError:  # `dard ... | head`: the reader left; no traceback, no message
        return _reader_gone()
    except KeyboardInterrupt:
        print("dard: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # one clear line unless --debug
        if args.debug:
            raise
        print(f"dard {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


def _run(args: argparse.Namespace) -> None:
    """The command, and its result printed as JSON under ``--json``."""
    result = COMMANDS[args.command](args)
    if args.json:
        from dard_plugin._json import dumps_strict

        print(dumps_strict(result, default=str), flush=True)


def _reader_gone() -> int:
    """Stdout's reader closed the pipe: point stdout at the null device, so that the
    interpreter's final flush does not fail again, and exit as a process killed by SIGPIPE
    does in a shell (141)."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 141


if __name__ == "__main__":  # python -m dard_plugin.cli.main, as python -m dard_plugin
    import sys

    sys.exit(main())
