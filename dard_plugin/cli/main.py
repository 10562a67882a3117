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
    try:
        args = build_parser().parse_args(argv)
    except SystemExit:  # --help or a usage error, printed by argparse
        if _stdout_reader_gone_after_flush():
            return 141
        raise
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    logging.getLogger("art").setLevel(logging.WARNING)  # ART logs its data path at import
    if args.quiet:
        logging.getLogger("auto-attack").setLevel(logging.WARNING)
    try:
        _run(args)
    except BrokenPipeError as error:  # `dard ... | head`: the reader left, no message
        if args.debug or not _stdout_reader_gone():
            return _failed(args, error)  # another pipe (a socket, a subprocess)
        return _redirect_stdout_to_null()
    except KeyboardInterrupt:
        print("dard: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        return _failed(args, error)
    return 0


def _failed(args: argparse.Namespace, error: Exception) -> int:
    """One clear line on stderr and status 2, or the traceback under ``--debug``."""
    if args.debug:
        raise error
    print(f"dard {args.command}: error: {error}", file=sys.stderr)
    return 2


def _run(args: argparse.Namespace) -> None:
    """The command, its result printed as JSON under ``--json``, and stdout flushed here (a
    closed pipe then fails inside ``main``, not at the interpreter's exit)."""
    result = COMMANDS[args.command](args)
    if args.json:
        from dard_plugin._json import dumps_strict

        print(dumps_strict(result, default=str))
    sys.stdout.flush()


def _stdout_reader_gone() -> bool:
    """Whether stdout is a pipe whose reading end is closed (``poll`` reports an error on
    its writing end); False for a terminal, a file or an object without a descriptor."""
    import select

    try:
        descriptor = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    poller = select.poll()
    poller.register(descriptor, select.POLLOUT)
    return any(events & select.POLLERR for _, events in poller.poll(0))


def _stdout_reader_gone_after_flush() -> bool:
    """Flush stdout; True, with stdout sent to the null device, where its reader has gone."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        if _stdout_reader_gone():
            _redirect_stdout_to_null()
            return True
        raise
    return False


def _redirect_stdout_to_null() -> int:
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
