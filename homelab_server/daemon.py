"""``homelab_server --config FILE``: the bridge daemon.

It keeps the homelab registered with signaling (signaling.py), answers each client's offer
with a peer connection (peers.py) and connects the client's data channels to the
configured services (services.py). SIGTERM or SIGINT closes everything and exits 0; a bad
configuration is one sentence naming the key and exit status 2.
"""

import argparse
import asyncio
import logging
import sys
import time
from pathlib import Path

from homelab_server.authorize import PeerAuthorizer
from homelab_server.config import DaemonConfig, load_config
from homelab_server.observing import EndpointError, Observing
from homelab_server.peers import PeerLimits, PeerManager
from homelab_server.services import ServiceRouter
from homelab_server.signaling import HomelabSignaling
from p2p_runtime.configfile import ConfigError
from p2p_runtime.identity import expiry_text
from p2p_runtime.logs import configure_logging
from p2p_runtime.sdnotify import notify
from p2p_runtime.stop import stop_on_signal
from p2p_runtime.watchdog import keep_watchdog, watchdog_interval
from p2p_webrtc import IcePolicy, install

log = logging.getLogger("homelab_server")
PROG = "homelab_server"
IDENTITY_EXPIRY_WARNING = 7 * 86400
"""A homelab credential closer than this to its expiry is a warning at start."""
CREDENTIAL_CHECK_INTERVAL = 5.0
"""Seconds between looks at the revocation list and at connected clients' expiry."""


async def recheck_credentials(peers: PeerManager) -> None:
    """Close peers whose credential was revoked or expired: within one interval."""
    while True:
        await asyncio.sleep(CREDENTIAL_CHECK_INTERVAL)
        await peers.recheck_credentials()


async def run(config: DaemonConfig) -> int:
    installed = install(IcePolicy(config.ice_servers, config.ice_port_range), config.data_path)
    router = ServiceRouter(config.services)
    signaling: HomelabSignaling | None = None

    async def send_signal(to: str, data: object) -> bool:
        assert signaling is not None
        return await signaling.send_signal(to, data)

    limits = PeerLimits(
        max_peers=config.max_peers,
        connect_timeout=config.peer_connect_timeout,
        max_channels=config.max_channels_per_peer,
        offers_per_minute=config.max_offers_per_minute,
    )
    identity = config.load_identity()
    revocations = config.load_revocations()
    authorizer = PeerAuthorizer(identity, revocations)
    peers = PeerManager(installed.policy, router, send_signal, limits, authorizer)
    signaling = HomelabSignaling(config, peers.on_signal, peers.on_signaling_error)
    log.info("homelab_server starting as %r; services: %s", config.name, router.offered())
    notify(STATUS=f"Connecting to {config.signaling_url}")
    log.info(installed.policy.describe())
    log.info(installed.data_path.describe())
    remaining = identity.certificate.expires_at - time.time()
    if remaining < IDENTITY_EXPIRY_WARNING:
        log.warning(
            "The homelab's credential expires in %.1f days: clients refuse it after that; "
            "issue a new one (ansible-playbook site.yml renews it)",
            remaining / 86400,
        )
    log.info(
        "Identity: %s, certified until %s; revocation list: %s",
        identity.certificate.describe(),
        expiry_text(identity.certificate.expires_at),
        f"{revocations.path} ({len(revocations.current())} revoked)"
        if revocations.path
        else "none (revocation_file not set)",
    )

    observing = Observing(config, peers, signaling)
    try:
        await observing.start()
    except EndpointError as exc:
        log.error("%s", exc)
        await observing.close()
        return 2

    stop = stop_on_signal()
    signaling_task = asyncio.create_task(signaling.run(), name="signaling")
    stopping = asyncio.create_task(stop.wait())
    checking = asyncio.create_task(recheck_credentials(peers), name="credentials")
    background = [stopping, signaling_task, checking]
    interval = watchdog_interval()
    if interval is not None:
        background.append(asyncio.create_task(keep_watchdog(interval, signaling.health)))
    # Ready once set up: registering may take long (signaling down at boot) and is retried.
    notify(READY="1")
    await asyncio.wait({signaling_task, stopping}, return_when=asyncio.FIRST_COMPLETED)

    log.info("Shutting down: closing %d peers", peers.count)
    notify(STOPPING="1")
    for task in background:
        task.cancel()
    await asyncio.gather(*background, return_exceptions=True)
    await peers.close_all()
    await router.close()
    await observing.close()
    log.info("Stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Bridge WebRTC data channels from clients to this homelab's local services.",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=Path("/etc/homelab-p2p-bridge/config.yml"),
        help="configuration file (default: %(default)s)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="check the configuration and exit (0 when it is usable, 2 with what is wrong)",
    )
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    if args.check:
        print(
            f"{args.config}: usable; registers as {config.name!r} at {config.signaling_url}, "
            f"{len(config.services)} service(s)"
        )
        return 0
    configure_logging(config.log_level)
    return asyncio.run(run(config))


if __name__ == "__main__":
    sys.exit(main())
