"""Sessions pinned to their peer's certificate by SDP fingerprints (RFC 4975 s.14.4).

The records and rules, without sockets: `PinSet` keeps each pinned session's fingerprints
by session id (checked when the peer connects and binds) and by the peer URI we connect to
(checked after our TLS handshake); `PinningTable` is the session matching that runs the
check before a request binds a session. `transport.MSRPStack` wires them to connections.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from twisted.logger import Logger

from .fingerprint import Fingerprint, fingerprint_of, matching
from .link import LinkCore
from .message import MSRPRequest
from .session import MSRPSession, SessionSettings, SessionTable

__all__ = ["Pin", "PinSet", "PinningTable"]

log = Logger(namespace="msrp_gateway.msrp.transport")


@dataclass(slots=True)
class Pin:
    """The fingerprints a session's peer certificate must match."""

    session_id: str
    next_hop: str  # the peer URI we would connect to (the session's one-URI path)
    fingerprints: tuple[Fingerprint, ...]
    on_mismatch: Callable[[str], None] | None

    def accepts(self, der: bytes | None) -> bool:
        return matching(der, self.fingerprints) is not None

    def refusal(self, der: bytes | None, peer: str) -> str:
        """Log the refused certificate with both digests; the reason for the session."""
        hashes = dict.fromkeys(fp.hash_name for fp in self.fingerprints)
        got = "no certificate" if der is None else \
            ", ".join(str(fingerprint_of(der, h)) for h in hashes)
        want = ", ".join(str(fp) for fp in self.fingerprints)
        log.warn("MSRP session {sid}: TLS peer {peer} refused: its certificate is {got}; "
                 "the SDP a=fingerprint pinned {want}", sid=self.session_id, peer=peer,
                 got=got, want=want)
        return f"peer certificate does not match the SDP fingerprint (got {got})"

    def notify(self, why: str) -> None:
        if self.on_mismatch is None:
            return
        try:
            self.on_mismatch(why)
        except Exception:
            log.failure("on_mismatch of MSRP session {sid} failed", sid=self.session_id)


class PinSet:
    """Pins by session id and by peer URI; as bounded as the session table (one per
    session, removed when the session is forgotten).

    A peer URI is one session's, but a hostile offer may copy another's: every pin naming
    that URI must then match the certificate, so a copy cannot unlock the first session."""

    def __init__(self) -> None:
        self._by_session: dict[str, Pin] = {}
        self._by_hop: dict[str, dict[str, Pin]] = {}

    def __len__(self) -> int:
        return len(self._by_session)

    def add(self, pin: Pin) -> None:
        self.remove(pin.session_id)
        self._by_session[pin.session_id] = pin
        self._by_hop.setdefault(pin.next_hop, {})[pin.session_id] = pin

    def remove(self, session_id: str) -> None:
        pin = self._by_session.pop(session_id, None)
        if pin is None:
            return
        same_hop = self._by_hop.get(pin.next_hop)
        if same_hop is not None:
            same_hop.pop(session_id, None)
            if not same_hop:
                del self._by_hop[pin.next_hop]

    def get(self, session_id: str) -> Pin | None:
        return self._by_session.get(session_id)

    def has_hop(self, uri: str) -> bool:
        return uri in self._by_hop

    def for_hop(self, uri: str) -> list[Pin]:
        return list(self._by_hop.get(uri, {}).values())


class PinningTable(SessionTable):
    """Session matching that lets a pinned session bind only to a connection whose peer
    certificate matches its fingerprints (`check(session, link)` raises SessionError)."""

    def __init__(self, settings: SessionSettings,
                 check: Callable[[MSRPSession, LinkCore], None]) -> None:
        super().__init__(settings)
        self._check = check

    def match(self, req: MSRPRequest, link: LinkCore,
              to_path: Sequence[str] | None = None,
              from_path: Sequence[str] | None = None) -> MSRPSession:
        session = super().match(req, link, to_path, from_path)
        if session.link is None:  # this request would bind it
            self._check(session, link)
        return session
