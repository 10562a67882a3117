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
        handler = COMMANDS[args.command]
        result = handler(args)
    except KeyboardInterrupt:
        print("dard: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # one clear line unless --debug
        if args.debug:
            raise
        print(f"dard {args.command}: error: {error}", file=sys.stderr)
        return 2
    if args.json:
        from dard_plugin._json import dumps_strict

        print(dumps_strict(result, default=str))
    return 0


if __name__ == "__main__":  # python -m dard_plugin.cli.main, as python -m dard_plugin
    import sys

    sys.exit(main())
