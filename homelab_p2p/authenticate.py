"""The client's half of end-to-end identity: prove the offer, check the answer (docs/security.md).

The answer must carry a certificate the operator issued to a homelab of the name the client
asked for, and that homelab's signature over both SDPs' fingerprints; otherwise whoever
relayed it (a compromised signaling service) could answer in the homelab's name or sit in
the middle, and the client closes the connection before DTLS, with a clear error.
"""

import time

from p2p_protocol import signals
from p2p_protocol.identity import (
    Certificate,
    IdentityError,
    answer_statement,
    offer_statement,
    parse_proof,
)
from p2p_runtime.identity import Credential, verify_certificate, verify_signature


def offer_signal(credential: Credential, homelab: str, sdp: str) -> dict[str, object]:
    """The offer to ``homelab``, with the credential's certificate and proof."""
    at = int(time.time())
    proof = credential.sign(offer_statement(homelab, at, sdp), at)
    return signals.offer(sdp, proof.to_json())


def check_answer(
    credential: Credential, homelab: str, offer_sdp: str, answer: signals.Signal
) -> Certificate:
    """The homelab's certificate if ``answer`` is the homelab's own answer to this offer."""
    proof = parse_proof(answer.identity, offer=False)
    certificate = verify_certificate(credential.operator, proof.certificate, "homelab")
    if certificate.name != homelab:
        raise IdentityError(f"its certificate is homelab {certificate.name!r}'s, not {homelab!r}'s")
    statement = answer_statement(credential.certificate.id, offer_sdp, answer.sdp)
    verify_signature(certificate, statement, proof.signature)
    return certificate
