"""The ``tsm`` command: thin sub-commands over the library's public functions.

Errors a user can fix are one line on stderr with exit code 1 (runtime) or 2 (usage); a
traceback only with ``--debug``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

from temporalshift import __version__


class UsageError(ValueError):
    """Bad arguments: reported like argparse's own errors, with exit code 2."""


def _table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    """Plain aligned text table: ``columns`` is ``[(key, header), ...]``; numbers right-aligned."""
    cells = [[h for _, h in columns]] + [
        ["-" if r.get(k) is None else str(r[k]) for k, _ in columns] for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    numeric = [all(_is_number(r.get(k)) for r in rows) for k, _ in columns]
    lines = []
    for j, row in enumerate(cells):
        parts = [
            c.rjust(w) if num and j else c.ljust(w) for c, w, num in zip(row, widths, numeric, strict=True)
        ]
        lines.append("  ".join(parts).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _is_number(value: Any) -> bool:
    """Numbers, and numbers formatted with a unit ("2.74M"), are right-aligned."""
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return True
    return isinstance(value, str) and re.fullmatch(r"-?[\d.,]+[kMG%]?", value) is not None


def cmd_models(args: argparse.Namespace) -> int:
    """List the model zoo with parameters and FLOPs computed from each model."""
    from temporalshift.models.zoo import describe, list_models

    names = list_models(args.pattern)
    if not names:
        raise UsageError(f"no model matches {args.pattern!r} (try `tsm models` for the full list)")
    infos = [describe(n) for n in names]
    if args.json:
        print(json.dumps(infos, indent=2))
        return 0
    rows = [
        {
            **info,
            "params_m": f"{info['params'] / 1e6:.2f}M",
            "gflops": f"{info['flops'] / 1e9:.2f}G",
            "top1": None if info["top1"] is None else f"{info['top1']:.2f}",
        }
        for info in infos
    ]
    columns = [
        ("name", "model"),
        ("backbone", "backbone"),
        ("shift", "shift"),
        ("frames", "T"),
        ("num_classes", "classes"),
        ("params_m", "params"),
        ("gflops", "FLOPs"),
        ("top1", "top-1"),
        ("protocol", "published protocol"),
    ]
    print(_table(rows, columns))
    print(
        "\nparams: whole model; FLOPs: backbone only, one clip of T frames at 224x224, "
        "1 multiply-add = 1 FLOP (mmaction2 1.x / fvcore convention)"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tsm", description="Video action recognition with the Temporal Shift Module."
    )
    parser.add_argument("--version", action="version", version=f"temporalshift {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("models", help="list the model zoo with params, FLOPs and published top-1")
    p.add_argument("pattern", nargs="?", help="shell-style filter, e.g. 'tsm_r50_*'")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.set_defaults(func=cmd_models)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``tsm``; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except UsageError as exc:
        if args.debug:
            raise
        parser.print_usage(sys.stderr)
        print(f"tsm {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as exc:
        if args.debug:
            raise
        print(f"tsm {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def run() -> None:
    """Console-script wrapper: exit with :func:`main`'s code."""
    sys.exit(main())


if __name__ == "__main__":
    run()
