from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import p2p_webrtc as webrtc
from lab.gateway import GatewayProcess
from p2p_webrtc.ice import IcePolicy
from tests.support.aws_modules import RecordingProxy, apigatewayv2
from tests.support.integration import StartGateway
from tests.support.moto_server import MotoServer


@pytest.fixture
def start_gateway(tmp_path: Path, secret_file: Path) -> Iterator[StartGateway]:
    """Start ``signaling-gateway`` on free ports; stopped (and its log checked) afterwards."""
    started: list[GatewayProcess] = []

    def start(*extra: str, auth: bool = True) -> GatewayProcess:
        args = ["--port", "0", *(["--secret-file", str(secret_file)] if auth else ["--no-auth"])]
        gateway = GatewayProcess([*args, *extra], tmp_path / f"gateway-{len(started)}.log")
        started.append(gateway)
        return gateway.start()

    yield start
    for gateway in started:
        gateway.stop()
        # A traceback in the gateway's log is a bug, whatever the test looked at.
        assert "Traceback" not in gateway.log(), gateway.log()


@pytest.fixture
def gateway(start_gateway: StartGateway) -> GatewayProcess:
    return start_gateway()


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """One moto_server for the session (it takes seconds to start); see ``aws``."""
    server = MotoServer(tmp_path_factory.mktemp("moto") / "moto.log").start()
    yield server
    server.stop()


@pytest.fixture
def aws(moto_server: MotoServer) -> MotoServer:
    """moto_server with every resource of earlier tests forgotten."""
    moto_server.reset()
    return moto_server


@pytest.fixture
def restore_default_install() -> Iterator[None]:
    """For tests that install another data path: the default one again afterwards."""
    yield
    webrtc.install(IcePolicy())


@pytest.fixture
def proxy(aws: MotoServer) -> Iterator[RecordingProxy]:
    """A proxy to moto that records every request (the AWS modules' tests)."""
    with RecordingProxy(aws.url) as recording:
        yield recording


@pytest.fixture
def apigw(aws: MotoServer) -> Any:
    """A boto3 apigatewayv2 client straight to moto, to check what a module did."""
    return apigatewayv2(aws)
