"""Build the Lambda deployment zip, byte for byte the same from the same sources.

    python -m signaling_lambda.package --out dist/signaling_lambda.zip

The zip holds the handler's modules: this package's ``.py`` files without its build tooling,
the protocol core ``p2p_protocol/`` beside it (standard library only), and the browser pages
``frontend/`` (its files and ``apps/``, which pages.py serves); boto3 comes with the Lambda
runtime. Entries are sorted, stored uncompressed (so zlib's version cannot change a byte),
dated 1980-01-01 and mode 0644, so the sha256 (Lambda's CodeSha256) changes exactly when a
source does.
"""

import argparse
import base64
import hashlib
import io
import sys
import zipfile
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROTOCOL_PACKAGE = "p2p_protocol"
PAGES_DIR = "frontend"
NOT_IN_ZIP = {"package.py"}
FIXED_DATE = (1980, 1, 1, 0, 0, 0)


def handler_sources(package_dir: Path = PACKAGE_DIR) -> dict[str, Path]:
    """The zip's entries (``p2p_protocol/names.py``, ``frontend/apps/bridge-sw.js``...) and
    the files they hold: ``package_dir``'s, and the protocol core's and pages' beside it."""
    checkout = package_dir.parent
    files = [p for p in package_dir.glob("*.py") if p.name not in NOT_IN_ZIP]
    files += (checkout / PROTOCOL_PACKAGE).glob("*.py")
    for folder in (checkout / PAGES_DIR, checkout / PAGES_DIR / "apps"):
        files += (p for p in folder.glob("*") if p.is_file())
    entries = {p.relative_to(checkout).as_posix(): p for p in files}
    return dict(sorted(entries.items()))


def build_zip_bytes(sources: dict[str, Path] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, source in (sources if sources is not None else handler_sources()).items():
            entry = zipfile.ZipInfo(name, FIXED_DATE)
            entry.external_attr = 0o100644 << 16
            entry.create_system = 3  # Unix, whatever machine builds it
            archive.writestr(entry, source.read_bytes())
    return buffer.getvalue()


def code_sha256(zip_bytes: bytes) -> str:
    """The digest as Lambda reports it (CodeSha256: base64 of the sha256)."""
    return base64.b64encode(hashlib.sha256(zip_bytes).digest()).decode()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the signaling Lambda zip.")
    parser.add_argument("--out", type=Path, default=Path("dist/signaling_lambda.zip"))
    parser.add_argument(
        "--source",
        type=Path,
        default=PACKAGE_DIR,
        help="the signaling_lambda directory to zip (default: this one)",
    )
    args = parser.parse_args(argv)
    sources = handler_sources(args.source)
    if not (args.source / "handler.py").is_file():
        print(
            f"{args.source} holds no handler.py: it is not a signaling_lambda directory",
            file=sys.stderr,
        )
        return 2
    if not (args.source.parent / PROTOCOL_PACKAGE / "messages.py").is_file():
        print(
            f"{args.source.parent} holds no {PROTOCOL_PACKAGE}/ beside signaling_lambda/: "
            "point --source at a checkout's signaling_lambda directory",
            file=sys.stderr,
        )
        return 2
    if not (args.source.parent / PAGES_DIR / "proxy.html").is_file():
        print(
            f"{args.source.parent} holds no {PAGES_DIR}/proxy.html beside signaling_lambda/: "
            "point --source at a checkout's signaling_lambda directory",
            file=sys.stderr,
        )
        return 2
    data = build_zip_bytes(sources)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(data)
    sha256 = hashlib.sha256(data).hexdigest()
    print(f"{args.out}: {len(data)} bytes, sha256 {sha256}, CodeSha256 {code_sha256(data)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
