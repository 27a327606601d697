"""TLS for msrps: our certificate, the contexts we listen and connect with, the peer's
certificate (RFC 4975 s.14.4: self-signed peers are checked by SDP fingerprint).

Listeners ask every client for a certificate and accept whatever comes (or nothing): the
session it binds decides, by the fingerprints its SDP gave (`MSRPStack`), so peers without
a certificate or without fingerprints connect as before. Outbound connections verify the
peer against ``ca_certificates`` (else the platform store) and its name, unless the session
pins the peer by fingerprint: then any certificate is taken and its digest is checked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL
from twisted.internet import ssl

from .fingerprint import DEFAULT_HASH, Fingerprint, fingerprint_of

__all__ = ["HANDSHAKE_LOG_PER_MINUTE", "HandshakeLog", "TLSSettings", "handshake_failure",
           "is_tls_error", "negotiated_tls13", "peer_certificate_der"]

# At most this many log lines a minute about failed TLS handshakes (a scanner or a peer
# speaking plain MSRP to an msrps port can open connections as fast as it likes); the
# count of the rest is logged once the minute is over.
HANDSHAKE_LOG_PER_MINUTE = 100


def _accept_any(connection: Any, x509: Any, errno: int, depth: int, ok: int) -> bool:
    """Verification callback: every certificate is taken here, checked by fingerprint later."""
    return True


class _RequestClientCertificate(ssl.CertificateOptions):
    """Server options that ask the client for a certificate without requiring or verifying
    one (VERIFY_PEER without FAIL_IF_NO_PEER_CERT, a callback that accepts all)."""

    _asks = False

    def getContext(self) -> SSL.Context:
        ctx: SSL.Context = super().getContext()
        if not self._asks:
            ctx.set_verify(SSL.VERIFY_PEER, _accept_any)
            self._asks = True
        return ctx


@dataclass(slots=True)
class TLSSettings:
    """Certificate and key files for msrps; `ca_certificates` verifies peers (else the
    platform trust store). Files are read once, on first use (the stack does it at start)."""

    certificate: str
    private_key: str
    ca_certificates: str | None = None
    _own_cert: Any = field(default=None, init=False, repr=False, compare=False)
    _trust_root: Any = field(default=None, init=False, repr=False, compare=False)
    _fingerprint: Fingerprint | None = field(default=None, init=False, repr=False,
                                             compare=False)
    _server: Any = field(default=None, init=False, repr=False, compare=False)

    def _own(self) -> Any:
        if self._own_cert is None:
            with open(self.certificate, "rb") as f:
                cert = f.read()
            with open(self.private_key, "rb") as f:
                key = f.read()
            # Twisted's ssl module has no annotations: its calls are untyped, not wrong.
            self._own_cert = ssl.PrivateCertificate.loadPEM(  # type: ignore[no-untyped-call]
                cert + b"\n" + key)
        return self._own_cert

    def _trust(self) -> Any:
        if self._trust_root is not None:
            return self._trust_root
        if not self.ca_certificates:
            self._trust_root = ssl.platformTrust()  # type: ignore[no-untyped-call]
            return self._trust_root
        with open(self.ca_certificates, "rb") as f:
            pem = f.read()
        blocks = re.findall(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----",
                            pem, re.S)
        if not blocks:
            raise ValueError(f"[tls] ca_certificates: no certificate in {self.ca_certificates}")
        self._trust_root = ssl.trustRootFromCertificates(  # type: ignore[no-untyped-call]
            [ssl.Certificate.loadPEM(b) for b in blocks])
        return self._trust_root

    def load(self) -> None:
        """Read and check every file now, so a bad file fails start-up, not a call."""
        self._own()
        self._trust()
        self.fingerprint()

    def fingerprint(self) -> Fingerprint:
        """SHA-256 of the certificate we present (the first one of the file), computed once:
        what our SDP puts in ``a=fingerprint`` for msrps streams."""
        if self._fingerprint is None:
            der: bytes = self._own().original.to_cryptography().public_bytes(Encoding.DER)
            self._fingerprint = fingerprint_of(der, DEFAULT_HASH)
        return self._fingerprint

    def server_options(self) -> Any:
        """Listener options: our certificate; a client certificate is asked for, never
        required or verified here (checked by fingerprint when a session is pinned)."""
        if self._server is None:
            own = self._own()
            self._server = _RequestClientCertificate(privateKey=own.privateKey.original,
                                                     certificate=own.original)
        return self._server

    def client_options(self, hostname: str) -> Any:
        """Outbound options that verify the peer's chain and name (no fingerprint known)."""
        return ssl.optionsForClientTLS(hostname, trustRoot=self._trust(),
                                       clientCertificate=self._own())

    def pinned_client_options(self) -> Any:
        """Outbound options for a peer pinned by fingerprint: present our certificate, take
        any from the peer (self-signed ones included); the caller checks its digest."""
        own = self._own()
        return ssl.CertificateOptions(privateKey=own.privateKey.original,
                                      certificate=own.original)


def peer_certificate_der(transport: Any) -> bytes | None:
    """The DER certificate the peer of a TLS `transport` presented; None when it sent none,
    the handshake is not done, or the transport is not TLS."""
    get = getattr(transport, "getPeerCertificate", None)
    if get is None:
        return None
    try:
        cert = get()
    except Exception:  # not a TLS transport after all, or a connection already torn down
        return None
    if cert is None:
        return None
    der: bytes = cert.to_cryptography().public_bytes(Encoding.DER)
    return der


def is_tls_error(reason: Any) -> bool:
    """True when a connection's loss (a `Failure`) was a TLS error: an alert, a refused
    certificate, bytes that are not TLS."""
    return isinstance(getattr(reason, "value", None), SSL.Error)


def negotiated_tls13(transport: Any) -> bool:
    """True on a TLS 1.3 connection (a server refuses our certificate only after our
    side of the handshake completed there)."""
    try:
        return bool(transport.getHandle().get_protocol_version_name() == "TLSv1.3")
    except Exception:  # not TLS, or already torn down
        return False


def handshake_failure(reason: Any) -> str:
    """A short sentence for a failed handshake: the peer's certificate not naming the host
    (service_identity), OpenSSL's reasons, else the loss's own message."""
    value = getattr(reason, "value", None)
    mismatched = [getattr(e, "mismatched_id", None) for e in getattr(value, "errors", ())]
    names = [getattr(m, "hostname", None) or getattr(m, "ip", None) for m in mismatched]
    if names and all(names):
        shown = ", ".join(n.decode("ascii", "replace") if isinstance(n, bytes) else str(n)
                          for n in names)
        return f"TLS handshake failed: the peer's certificate does not name {shown}"
    args = getattr(value, "args", None)
    if args and isinstance(args[0], list) and args[0] and isinstance(args[0][0], tuple):
        return "TLS handshake failed: " + "; ".join(str(e[-1]) for e in args[0])
    message = reason.getErrorMessage() if hasattr(reason, "getErrorMessage") else str(reason)
    return f"TLS handshake failed: {message}"


class HandshakeLog:
    """Rate limit for lines about failed handshakes: at most `per_minute` a minute (on the
    caller's clock), then one line counting the rest when the next minute begins."""

    __slots__ = ("per_minute", "failures", "_window", "_count", "_suppressed")

    def __init__(self, per_minute: int = HANDSHAKE_LOG_PER_MINUTE) -> None:
        self.per_minute = per_minute
        self.failures = 0  # every failed handshake, logged or not
        self._window = float("-inf")
        self._count = 0
        self._suppressed = 0

    def may_log(self, now: float) -> tuple[bool, int]:
        """Count one failure; (whether to log it, how many went unlogged in the minute
        that just ended — to be logged now when not 0)."""
        self.failures += 1
        ended = 0
        if now - self._window >= 60.0:
            ended, self._suppressed = self._suppressed, 0
            self._window, self._count = now, 0
        if self._count < self.per_minute:
            self._count += 1
            return True, ended
        self._suppressed += 1
        return False, ended
