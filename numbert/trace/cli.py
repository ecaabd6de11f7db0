"""`numbert trace TEXT...`: print the forward pass step by step, check it against torch, write a page."""

from __future__ import annotations

import argparse
import sys

from ..hub import DEFAULT_MODEL
from .run import trace

EPILOG = f"""\
examples:
  numbert trace "I love cats!"                                   every step of the default model
  numbert trace "I love cats!" "He hates pineapple pizza." --layers 1,6 --stats
  numbert trace "Is it raining?" --pair "It is sunny." --values  a text pair: token types 0 and 1
  numbert trace "I love cats!" --check-torch                     each step's difference to transformers
  numbert trace "I love cats!" --model ./my-bert --html trace.html

MODEL is a checkpoint folder or a Hugging Face Hub id (default: {DEFAULT_MODEL}).
--check-torch needs torch and transformers.

exit codes: 0 success, 1 the model could not be found or read, or (with --check-torch) a step
diverges from transformers, 2 bad usage or input.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "trace", help="show every intermediate tensor of the forward pass, with its shape",
        description="Run the NumPy reference forward pass on TEXT... and print every intermediate tensor "
                    "in order, with its shape, as the 'Bert Inner Workings' walkthrough does.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("texts", nargs="+", metavar="TEXT", help="one or more texts (one batch)")
    p.add_argument("--model", "-m", default=None, help=f"checkpoint folder or model name (default: {DEFAULT_MODEL})")
    p.add_argument("--pair", action="append", default=None, metavar="TEXT",
                   help="second text of a pair, once per TEXT, in order (token type 1)")
    p.add_argument("--layers", default=None, metavar="LIST",
                   help="which encoder layers to show, 1-based: 1,12 or 2-4 (default: all)")
    p.add_argument("--values", action="store_true", help="print a few values and min/max/mean/std per step")
    p.add_argument("--stats", action="store_true", help="print min/max/mean/std per step (at real tokens)")
    p.add_argument("--check-torch", action="store_true",
                   help="run transformers on the same ids and print each step's max abs difference")
    p.add_argument("--tolerance", type=float, default=1e-4,
                   help="a step diverges beyond tolerance * max(1, |value|) (default: 1e-4)")
    p.add_argument("--max-length", type=int, default=None, help="truncate each input to this many tokens")
    p.add_argument("--html", metavar="FILE", default=None,
                   help="also write one self-contained HTML page: flow diagram, tokens, attention heatmaps")
    p.set_defaults(func=run)


def run(args) -> int:
    """The verb. A model that cannot be found or read (exit 1) and bad input (exit 2) raise to numbert.cli.main."""
    try:
        t = trace(args.texts, args.model, text_pair=args.pair, layers=args.layers,
                  check="torch" if args.check_torch else None, max_length=args.max_length,
                  tolerance=args.tolerance)
    except ImportError as e:  # --check-torch without torch or transformers: bad usage, as numbert.cli says
        print(f"numbert trace: {e}", file=sys.stderr)
        return 2
    print(t.render(values=args.values, stats=args.stats or args.values))
    if args.html:
        t.save_html(args.html)
        print(f"\nwrote {args.html}")
    return 0 if t.check is None or t.check.ok else 1
