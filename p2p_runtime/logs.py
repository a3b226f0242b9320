"""Logging as every process of this project does it: ``[LEVEL] message`` on stderr.

Under systemd the journal adds the time and the unit; the levels and words are the ones
the troubleshooting guide shows. Libraries speak only when something is wrong.
"""

import logging
import logging.handlers
import sys
from pathlib import Path

QUIET_LIBRARIES = (
    "websockets",
    "aiohttp",
    "botocore",
    "boto3",
    "urllib3",
    "asyncio",
    "aioice",
    "aiortc",
)


LOG_FILE_BYTES = 1024 * 1024
"""A log file (the client agent's) is rotated at this size, one old file kept."""


def configure_logging(level: str, file: Path | None = None) -> None:
    """``[LEVEL] message`` on stderr, or with the time in ``file`` (rotated at LOG_FILE_BYTES)."""
    if file is None:
        logging.basicConfig(
            level=level, format="[%(levelname)s] %(message)s", stream=sys.stderr, force=True
        )
    else:
        handler = logging.handlers.RotatingFileHandler(file, maxBytes=LOG_FILE_BYTES, backupCount=1)
        logging.basicConfig(
            level=level,
            format="%(asctime)s [%(levelname)s] %(message)s",
            handlers=[handler],
            force=True,
        )
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)
