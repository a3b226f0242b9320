"""The Lambda handler's cold start: import, first invocation, warm invocations.

    .venv/bin/python -m benchmarks.lambda_cold_start [--runs 7]

Each run is a fresh Python process in the environment of a deployed function (the
``dynamodb`` registry; AWS is a ``moto_server`` on loopback, the management API too). It
times ``import signaling_lambda.handler``, then the first invocation (a client's message to
a registered homelab: a DynamoDB read and a PostToConnection), then 50 warm ones. Two
kinds of run alternate in the same benchmark: "on Lambda" (``AWS_LAMBDA_RUNTIME_API`` set,
as in a Lambda environment: the app and its clients are built at import, in the init phase)
and "built on first use" (the old way: the first invocation builds them). Prints a table
and one JSON line.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import boto3

from benchmarks.report import machine_description, print_rows, report
from tests.support.aws import create_registry_table
from tests.support.moto_server import CREDENTIALS, MotoServer

REGION = "us-east-1"
TABLE = "homelab-p2p-registry"
SECRET = os.urandom(32).hex()

ONE_RUN = r"""
import json, sys, time
started = time.perf_counter()
from signaling_lambda import handler
imported = time.perf_counter()
events = json.loads(sys.stdin.read())
timings = []
for event in events:
    before = time.perf_counter()
    answer = handler.lambda_handler(event, None)
    timings.append(time.perf_counter() - before)
    assert answer == {"statusCode": 200}, answer
print(json.dumps({"import": imported - started, "invocations": timings}))
"""


def relay_event() -> dict[str, Any]:
    """A client's offer to the registered homelab, as API Gateway hands it to the function."""
    body = {"action": "sendSignal", "to": "laptop", "data": {"type": "offer", "sdp": "v=0"}}
    return {
        "requestContext": {
            "routeKey": "sendSignal",
            "eventType": "MESSAGE",
            "connectionId": "CLIENT=",
            "requestId": "r",
            "domainName": "example.execute-api.us-east-1.amazonaws.com",
            "stage": "prod",
            "authorizer": {
                "role": "client",
                "name": "bench",
                "homelabs": "laptop",
                "expiresAt": "4102444800",
                "credentialId": "",
            },
        },
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }


def prepare(moto: MotoServer) -> None:
    session = boto3.session.Session(
        CREDENTIALS["AWS_ACCESS_KEY_ID"], CREDENTIALS["AWS_SECRET_ACCESS_KEY"], region_name=REGION
    )
    dynamodb = session.client("dynamodb", endpoint_url=moto.url)
    create_registry_table(dynamodb, TABLE)
    dynamodb.put_item(
        TableName=TABLE,
        Item={
            "name": {"S": "laptop"},
            "connectionId": {"S": "HOME="},
            "expiresAt": {"N": "4102444800"},
        },
    )


def one_run(moto: MotoServer, on_lambda: bool, warm: int) -> dict[str, float]:
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        **CREDENTIALS,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL": moto.url,
        "APIGW_MANAGEMENT_ENDPOINT": moto.url,
        "AWS_LAMBDA_FUNCTION_NAME": "homelab-p2p-signaling",
        "REGISTRY_BACKEND": "dynamodb",
        "REGISTRY_TABLE": TABLE,
        "SIGNALING_SECRET": SECRET,
        "LOG_LEVEL": "INFO",
    }
    if on_lambda:
        environment["AWS_LAMBDA_RUNTIME_API"] = "127.0.0.1:9001"  # only its presence counts
    event = relay_event()
    result = subprocess.run(
        [sys.executable, "-c", ONE_RUN],
        input=json.dumps([event] * (1 + warm)),
        env=environment,
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"the handler failed:\n{result.stderr[-3000:]}")
    timings = json.loads(result.stdout.splitlines()[-1])
    first, *rest = timings["invocations"]
    return {
        "import_ms": timings["import"] * 1000,
        "first_ms": first * 1000,
        "warm_p50_ms": statistics.median(rest) * 1000,
    }


def summary(name: str, runs: list[dict[str, float]]) -> dict[str, Any]:
    def median(key: str) -> float:
        return round(statistics.median(run[key] for run in runs), 1)

    return {
        "how": name,
        "runs": len(runs),
        "import_ms": median("import_ms"),
        "first_invocation_ms": median("first_ms"),
        "import_plus_first_ms": round(
            statistics.median(run["import_ms"] + run["first_ms"] for run in runs), 1
        ),
        "warm_p50_ms": median("warm_p50_ms"),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as workdir:
        moto = MotoServer(Path(workdir) / "moto.log", CREDENTIALS).start()
        try:
            prepare(moto)
            on_lambda: list[dict[str, float]] = []
            first_use: list[dict[str, float]] = []
            for _ in range(args.runs):  # alternating, so both see the same machine
                on_lambda.append(one_run(moto, True, args.warm))
                first_use.append(one_run(moto, False, args.warm))
        finally:
            moto.stop()
    return {
        "benchmark": "lambda_cold_start",
        "machine": machine_description(),
        "rows": [
            summary("on Lambda: built at import (init phase)", on_lambda),
            summary("built on first use (before)", first_use),
        ],
    }


def print_table(result: dict[str, Any]) -> None:
    print(
        f"\nLambda cold start: {result['machine']}, medians of {result['rows'][0]['runs']} runs\n"
    )
    print_rows(
        [
            ("how", "how", 42),
            ("import ms", "import_ms", 11),
            ("1st call ms", "first_invocation_ms", 13),
            ("sum ms", "import_plus_first_ms", 9),
            ("warm p50 ms", "warm_p50_ms", 13),
        ],
        result["rows"],
    )
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="fresh processes of each kind")
    parser.add_argument("--warm", type=int, default=50, help="warm invocations per process")
    report(run(parser.parse_args()), print_table)


if __name__ == "__main__":
    main()
