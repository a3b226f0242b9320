"""Configuration files: the error every configuration problem raises, and reading YAML."""

from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """The configuration cannot be used; str() names the file or key and what is wrong."""


def read_yaml(path: Path, what: str) -> Any:
    """The YAML document in ``path``; ``what`` names the file in errors (``the configuration``)."""
    import yaml  # noqa: PLC0415 - only when a file is read: it costs every client start 15 ms

    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "it cannot be parsed"
        raise ConfigError(f"{path}: is not valid YAML{where}: {problem}") from None
