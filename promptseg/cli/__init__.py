"""The ``promptseg`` command line. Argument parsing only; each command calls the Python API.

Each command lives in its own module with ``register(subparsers)``, which adds
its parser and sets ``run`` (a function of the parsed arguments returning the
exit code) as the parser's default.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from promptseg.cli import amg, annotate, evaluate, export, find, info, predict, train, zeroshot

COMMANDS = (predict, amg, annotate, train, export, info, zeroshot, evaluate, find)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="promptseg", description="Segment Anything, fast and faithful.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``promptseg`` script; bad input exits with status 2 and a one-line message."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, TypeError, FileNotFoundError) as error:
        parser.error(str(error))


if __name__ == "__main__":
    sys.exit(main())
