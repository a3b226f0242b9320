"""What every benchmark does last: its table for people, then one JSON line for programs."""

import json
import os
import platform
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

Result = dict[str, Any]


def machine_description() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def needs_root(module: str) -> None:
    if os.geteuid() != 0:
        raise SystemExit(f"{module} builds network namespaces: run it as root")


def report(result: Result, print_table: Callable[[Result], None]) -> None:
    print_table(result)
    print(json.dumps(result))


Column = tuple[str, str, int]
"""A table column: its title, the row's key, its width (the first column is left-aligned)."""


def print_rows(columns: Sequence[Column], rows: Iterable[Mapping[str, Any]]) -> None:
    """A header line, then one line per row."""

    def line(cells: Sequence[object]) -> str:
        first, *rest = zip(cells, columns, strict=True)
        return f"{first[0]!s:<{first[1][2]}}" + "".join(
            f"{cell!s:>{width}}" for cell, (_, _, width) in rest
        )

    print(line([title for title, _, _ in columns]))
    for row in rows:
        print(line([row[key] for _, key, _ in columns]))
