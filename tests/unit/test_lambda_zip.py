"""The Lambda zip: the same bytes from the same sources, and only what the function needs."""

import ast
import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from signaling_lambda.package import (
    PACKAGE_DIR,
    PROTOCOL_PACKAGE,
    build_zip_bytes,
    code_sha256,
    handler_sources,
    main,
)

ALLOWED_THIRD_PARTY = {
    "boto3",
    "botocore",
    "mypy_boto3_apigatewaymanagementapi",
    "mypy_boto3_dynamodb",
    "mypy_boto3_lambda",
}


def test_two_builds_are_byte_identical(tmp_path: Path) -> None:
    first, second = tmp_path / "a.zip", tmp_path / "b.zip"
    main(["--out", str(first)])
    main(["--out", str(second)])
    assert first.read_bytes() == second.read_bytes()


def test_the_digest_follows_the_sources(tmp_path: Path) -> None:
    sources = {}
    for name, source in handler_sources().items():
        copy = tmp_path / name
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes(source.read_bytes())
        sources[name] = copy
    same = build_zip_bytes(sources)
    assert same == build_zip_bytes()
    first = next(iter(sources.values()))
    os.utime(first, (0, 0))  # a touched file with the same bytes changes nothing
    assert build_zip_bytes(sources) == same
    first.write_bytes(first.read_bytes() + b"\n# changed\n")
    assert build_zip_bytes(sources) != same


def test_entries_are_sorted_dated_1980_and_mode_0644() -> None:
    with zipfile.ZipFile(io.BytesIO(build_zip_bytes())) as archive:
        entries = archive.infolist()
    names = [entry.filename for entry in entries]
    assert names == sorted(names)
    assert all(entry.date_time == (1980, 1, 1, 0, 0, 0) for entry in entries)
    assert all(entry.external_attr >> 16 == 0o100644 for entry in entries)


def test_only_the_handler_modules_are_in_it() -> None:
    with zipfile.ZipFile(io.BytesIO(build_zip_bytes())) as archive:
        names = set(archive.namelist())
    assert "signaling_lambda/handler.py" in names
    assert "signaling_lambda/app.py" in names
    assert "p2p_protocol/messages.py" in names
    assert not any(
        "gateway" in name or "package.py" in name or "__pycache__" in name for name in names
    )
    tops = {name.split("/")[0] for name in names}
    assert tops == {"signaling_lambda", "p2p_protocol", "frontend"}
    assert {"frontend/proxy.html", "frontend/wss-webrtc.js", "frontend/apps/bridge-sw.js"} <= names
    assert not any(name.startswith(("boto3/", "botocore/")) for name in names)


def test_handler_modules_import_only_the_stdlib_boto3_and_themselves() -> None:
    for source in handler_sources().values():
        if source.suffix != ".py":
            continue
        tree = ast.parse(source.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                assert (
                    top in sys.stdlib_module_names
                    or top in ALLOWED_THIRD_PARTY
                    or top in {PACKAGE_DIR.name, PROTOCOL_PACKAGE}
                ), f"{source.name} imports {module}, which the Lambda runtime does not have"


def test_the_zip_runs_on_its_own(tmp_path: Path) -> None:
    """Import the handler from the zip alone (not the checkout) and answer a $connect."""
    archive = tmp_path / "function.zip"
    archive.write_bytes(build_zip_bytes())
    script = (
        "import json, sys; sys.path.insert(0, sys.argv[1]);"
        "import signaling_lambda.handler as h;"
        "assert h.__file__.startswith(sys.argv[1]), h.__file__;"
        "event = {'requestContext': {'routeKey': '$connect', 'connectionId': 'C=',"
        " 'domainName': 'x.example', 'stage': 'prod'}};"
        "print(json.dumps(h.lambda_handler(event, None)))"
    )
    environment = {**os.environ, "REGISTRY_BACKEND": "memory", "SIGNALING_AUTH": "off"}
    result = subprocess.run(
        [sys.executable, "-c", script, str(archive)],
        capture_output=True,
        text=True,
        env=environment,
        check=True,
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"statusCode": 200}


def test_the_unpacked_zip_serves_the_pages(tmp_path: Path) -> None:
    """Lambda unpacks the zip into /var/task: from there the handler finds frontend/ too."""
    task = tmp_path / "task"
    with zipfile.ZipFile(io.BytesIO(build_zip_bytes())) as archive:
        archive.extractall(task)
    script = (
        "import base64, json, sys; sys.path.insert(0, sys.argv[1]);"
        "import signaling_lambda.handler as h;"
        "assert h.__file__.startswith(sys.argv[1]), h.__file__;"
        "ask = lambda host, path: h.lambda_handler({'version': '2.0', 'rawPath': path,"
        " 'requestContext': {'domainName': host, 'http': {'method': 'GET'}}}, None);"
        "answers = [ask('console.example', '/proxy.html'), ask('apps.example', '/bridge-sw.js')];"
        "print(json.dumps([(a['statusCode'], base64.b64decode(a['body']).decode())"
        " for a in answers]))"
    )
    environment = {
        "PATH": os.environ.get("PATH", ""),
        "PAGES_CONSOLE_ORIGIN": "https://console.example",
        "PAGES_APPS_ORIGIN": "https://apps.example",
        "PAGES_SIGNALING_URL": "wss://signaling.example/prod",
    }
    result = subprocess.run(
        [sys.executable, "-c", script, str(task)],
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,
        check=True,
    )
    frontend = PACKAGE_DIR.parent / "frontend"
    assert json.loads(result.stdout) == [
        [200, (frontend / "proxy.html").read_text()],
        [200, (frontend / "apps" / "bridge-sw.js").read_text()],
    ]


def test_code_sha256_is_what_lambda_reports() -> None:
    data = build_zip_bytes()
    import base64

    assert base64.b64decode(code_sha256(data)) == hashlib.sha256(data).digest()
