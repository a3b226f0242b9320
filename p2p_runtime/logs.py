"""Logging as every process of this project does it: ``[LEVEL] message`` on stderr.

Under systemd the journal adds the time and the unit; the levels and words are the ones
the troubleshooting guide shows. Libraries speak only when something is wrong.
"""

import logging
import sys

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


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level, format="[%(levelname)s] %(message)s", stream=sys.stderr, force=True
    )
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)
