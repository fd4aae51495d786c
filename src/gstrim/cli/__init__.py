"""`gstrim <verb>`: parses arguments, calls one library function, prints. No logic of its own.

Every flag is defined once: the verbs' options are generated from the library's configuration dataclasses
(`cli.flags`), so a new field, score, preset or format option reaches the command line without an edit here.
"""

from __future__ import annotations

import argparse
import os
import sys

from gstrim import progress
from gstrim.cli import experiment_commands, run_commands, scene_commands
from gstrim.cli.flags import flag_of
from gstrim.errors import ConfigError, GstrimError
from gstrim.io.formats import suffixes
from gstrim.version import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gstrim",
        description="Make trained 3D Gaussian Splatting scenes small and fast without losing quality.",
    )
    parser.add_argument("--version", action="version", version=f"gstrim {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or status lines")
    parser.add_argument("--threads", type=int,
                        help="threads for torch and Numba together (default: $GSTRIM_THREADS, else one per core)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    scene_commands.register(sub, ", ".join(suffixes()))
    run_commands.register(sub)
    experiment_commands.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from gstrim.resources import return_freed_memory
    from gstrim.threads import set_threads

    return_freed_memory()

    args = build_parser().parse_args(argv)
    if args.quiet:
        progress.set_enabled(False)
    try:
        set_threads(args.threads)
        return args.func(args)
    except ConfigError as exc:
        print(f"gstrim: error: {exc.for_flags(flag_of)}", file=sys.stderr)
        return 1
    except GstrimError as exc:
        print(f"gstrim: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("gstrim: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
