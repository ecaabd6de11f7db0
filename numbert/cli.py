"""The `numbert` command line. Each sub-command registers itself in build_parser()."""

from __future__ import annotations

import argparse
import sys

from . import trace_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="numbert",
        description="BERT inference in NumPy and Numba: classify, embed, and look inside the forward pass.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    trace_cli.register(sub)
    # more commands register here
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
