"""Who may connect: the daemon checks each offer's credential itself, trusting signaling for
nothing but delivery (docs/security.md).

An offer is answered only when its certificate is the operator's, for a client, current,
not revoked and naming this homelab, and its proof is that client's signature over this
very offer (its DTLS fingerprints, this homelab, a time within ``PROOF_MAX_AGE``) and was
not seen before. The answer carries the homelab's own proof over both SDPs' fingerprints.
"""

import time
from collections import OrderedDict

from p2p_protocol.identity import (
    PROOF_MAX_AGE,
    Certificate,
    IdentityError,
    Proof,
    answer_statement,
    offer_statement,
    parse_proof,
)
from p2p_runtime.identity import Credential, verify_certificate, verify_signature
from p2p_runtime.revocation import RevocationList

REMEMBERED_PROOFS = 4096
"""Offer proofs remembered to refuse a replay (each is good for 2 x PROOF_MAX_AGE at most)."""


class PeerAuthorizer:
    def __init__(self, identity: Credential, revocations: RevocationList) -> None:
        self.identity = identity
        self.revocations = revocations
        self._seen: OrderedDict[str, float] = OrderedDict()

    @property
    def name(self) -> str:
        return self.identity.certificate.name

    def check_offer(self, identity: object, sdp: str, now: float | None = None) -> Certificate:
        """The client's certificate if its offer may be answered; IdentityError says why not."""
        now = time.time() if now is None else now
        proof = parse_proof(identity, offer=True)
        client = verify_certificate(
            self.identity.operator, proof.certificate, "client", self.revocations.current(), now
        )
        if not client.may_reach(self.name):
            raise IdentityError(
                f"the credential of {client.describe()} does not name homelab {self.name!r} "
                f"(it names {', '.join(client.homelabs)})"
            )
        skew = now - proof.at
        if abs(skew) > PROOF_MAX_AGE:
            raise IdentityError(
                f"its proof was signed {abs(skew):.0f} s {'ago' if skew > 0 else 'ahead'}, "
                f"more than {PROOF_MAX_AGE} s from the homelab's clock; check the client's clock"
            )
        verify_signature(client, offer_statement(self.name, proof.at, sdp), proof.signature)
        self._remember(proof, now)
        return client

    def _remember(self, proof: Proof, now: float) -> None:
        """Refuse a proof seen before: a replayed offer would only hold a place."""
        while self._seen and next(iter(self._seen.values())) < now - 2 * PROOF_MAX_AGE:
            self._seen.popitem(last=False)
        if proof.signature in self._seen:
            raise IdentityError("this offer was answered before (a replay)")
        self._seen[proof.signature] = now
        while len(self._seen) > REMEMBERED_PROOFS:
            self._seen.popitem(last=False)

    def still_valid(self, client: Certificate, now: float | None = None) -> str | None:
        """Why a connected client's credential is no longer good, or None."""
        if client.id in self.revocations.current():
            return f"the credential of {client.describe()} was revoked"
        if client.expires_at <= (time.time() if now is None else now):
            return f"the credential of {client.describe()} expired"
        return None

    def prove_answer(self, client: Certificate, offer_sdp: str, answer_sdp: str) -> Proof:
        return self.identity.sign(answer_statement(client.id, offer_sdp, answer_sdp))
