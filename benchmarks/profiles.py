"""Where a process spends its time: py-spy samples grouped by the layer they fall in."""

import signal
import subprocess
from collections import Counter
from pathlib import Path

# First match wins, innermost frame first: the layer that was running when sampled.
# The fast data path's modules (p2p_webrtc/fastpath/) count in the layer they replace.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "DTLS (pyOpenSSL, cryptography)",
        ("rtcdtlstransport.py", "OpenSSL/", "cryptography/", "fastpath/dtls.py"),
    ),
    ("SCTP (aiortc rtcsctptransport)", ("rtcsctptransport.py", "fastpath/sctp.py")),
    ("CRC32c", ("crc32c",)),
    ("ICE/STUN (aioice)", ("aioice/",)),
    ("data channel events (aiortc, pyee)", ("rtcdatachannel.py", "pyee/")),
    ("UDP I/O (fastpath/udp.py)", ("fastpath/udp.py",)),
    ("bridge (homelab_server)", ("homelab_server/",)),
    ("UDP and TCP I/O, event loop (asyncio)", ("asyncio/", "selectors.py", "socket.py")),
]


class Sampler:
    """``py-spy record`` on one process until ``stop``."""

    def __init__(self, pid: int, output: Path, py_spy: str) -> None:
        self.output = output
        self._process = subprocess.Popen(
            [
                py_spy,
                "record",
                "-p",
                str(pid),
                "-r",
                "250",
                "-f",
                "raw",
                "-o",
                str(output),
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> dict[str, float]:
        self._process.send_signal(signal.SIGINT)
        self._process.wait(timeout=60)
        return summarize(self.output)


def summarize(raw: Path) -> dict[str, float]:
    """Percent of busy samples per layer."""
    counts: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, number = line.rpartition(" ")
        if not number.isdigit():
            continue
        samples = int(number)
        total += samples
        frames = stack.split(";")
        layer = next(
            (
                name
                for frame in reversed(frames)
                for name, marks in LAYERS
                if any(mark in frame for mark in marks)
            ),
            "other",
        )
        counts[layer] += samples
    return (
        {name: round(100 * count / total, 1) for name, count in counts.most_common()}
        if total
        else {}
    )
