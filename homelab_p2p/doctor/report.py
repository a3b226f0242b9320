"""How the doctor says it: a line per check (✓ ✗ -), the guide's row under each ✗, or JSON."""

import json
import sys
from typing import TextIO

from homelab_p2p.doctor.checks import Result

MARKS = {"ok": "✓", "fail": "✗", "skip": "-"}


def text(results: list[Result], out: TextIO = sys.stdout) -> None:
    width = max(len(r.name) for r in results)
    for result in results:
        print(
            f"{MARKS[result.status]} {result.step} {result.name:<{width}}  {result.detail}",
            file=out,
        )
        if result.row is not None:
            print(f"      error:    {result.row.error}", file=out)
            print(f"      cause:    {result.row.cause}", file=out)
            print(f"      solution: {result.row.solution}", file=out)
    failed = [r for r in results if r.status == "fail"]
    verdict = "all checks passed" if not failed else f"{len(failed)} check(s) failed"
    print(f"homelab-p2p doctor: {verdict}", file=out)


def as_json(results: list[Result], url: str, target: str, out: TextIO = sys.stdout) -> None:
    document = {
        "ok": all(r.status != "fail" for r in results),
        "signaling_url": url,
        "target": target,
        "checks": [r.as_dict() for r in results],
    }
    print(json.dumps(document, indent=2), file=out)
