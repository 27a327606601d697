"""Sending requests: what ``stack.SIPStack`` does as a UAC outside dialogs' own state.

``RequestSender`` builds out-of-dialog requests, resolves their next hop (s.8.1.2), puts our
Via on them and runs non-INVITE client transactions in the shared ``TransactionTable``; it
also sends responses and stateless requests.  ``SIPStack`` is a ``RequestSender`` (the
INVITE client, ``invite.InviteClient``, uses these methods through the stack).
"""

from __future__ import annotations

import secrets
from typing import Any, Iterable

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from .dialog import new_tag
from .message import Headers, SIPParseError, SIPRequest, SIPResponse, Via
from .peers import Peer, is_reliable
from .records import wire_length
from .resolution import udp_fallback
from .table import ClientEntry, TransactionTable
from .transaction import (
    MAGIC_COOKIE,
    NonInviteClientTransaction,
    SIPTimeout,
    SIPTransportError,
    TimerSettings,
)
from .uri import parse_name_addr

__all__ = ["RequestSender", "new_branch"]

log = Logger(namespace="msrp_gateway.sip.stack")  # operators know the stack's namespace


def new_branch() -> str:
    """A Via branch with the RFC 3261 magic cookie and 80 random bits (s.8.1.1.7)."""
    return MAGIC_COOKIE + secrets.token_hex(10)


class RequestSender:
    """Out-of-dialog requests and responses over one ``SIPTransport``."""

    def __init__(self, transport: Any, table: TransactionTable, *, local_uri_host: str,
                 outbound_proxy: str | None, timers: TimerSettings, user_agent: str) -> None:
        self.transport = transport
        self.table = table
        self.local_uri_host = local_uri_host
        self.outbound_proxy = outbound_proxy
        self.timers = timers
        self.user_agent = user_agent
        self._cseq = secrets.randbelow(2 ** 16) + 1

    def contact(self) -> str:
        """Our default Contact; requests and 2xx get ``contact_for(peer)`` instead."""
        return f"<sip:{self.local_uri_host}>"

    def contact_for(self, peer: Any) -> str:
        """The Contact for a dialog over ``peer``'s transport: our listener of that transport,
        with ``transport=`` when not UDP, so in-dialog requests come back the same way."""
        try:
            proto, host, port = self.transport.local_via(peer)
        except Exception:
            return self.contact()
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        proto = proto.lower()
        suffix = "" if proto == "udp" else f";transport={proto}"
        return f"<sip:{host}:{port}{suffix}>"

    def new_request(self, method: str, from_uri: str, to_uri: str, ruri: str, *,
                    body: bytes = b"", content_type: str | None = None,
                    headers: Iterable[tuple[str, str]] = ()) -> SIPRequest:
        """An out-of-dialog request: fresh Call-ID and From tag, CSeq, Max-Forwards, Contact;
        the outbound proxy, if configured, as a pre-loaded loose route (s.8.1.2)."""
        self._cseq = self._cseq % 2 ** 31 + 1
        h = Headers()
        if self.outbound_proxy:
            proxy = self.outbound_proxy
            h.add("Route", f"<{proxy}>" if ";lr" in proxy.lower() else f"<{proxy};lr>")
        h.add("Max-Forwards", "70")
        h.add("From", f"{_name_addr(from_uri)};tag={new_tag()}")
        h.add("To", _name_addr(to_uri))
        h.add("Call-ID", f"{secrets.token_hex(12)}@{self.local_uri_host}")
        h.add("CSeq", f"{self._cseq} {method}")
        h.add("Contact", self.contact())
        h.add("User-Agent", self.user_agent)
        for name, value in headers:
            h.add(name, value)
        if content_type is not None:
            h.set("Content-Type", content_type)
        return SIPRequest(method, ruri, h, body)

    def send_request(self, req: SIPRequest) -> defer.Deferred[SIPResponse]:
        """Send a non-INVITE request; fires with its final response (any status).

        Errbacks ``SIPTimeout`` (Timer F) or ``SIPTransportError`` (no route, send failed,
        transaction table full).
        """
        result: defer.Deferred[SIPResponse] = defer.Deferred()
        d = self._resolve(req)

        def resolved(peer: Any) -> defer.Deferred[SIPResponse]:
            self._add_via(req, peer)
            sent = self._start_client(req, peer)
            fallback = self._udp_fallback(req, peer)
            if fallback is not None:
                sent.addErrback(self._retry_over_udp, req, peer, fallback)
            return sent

        d.addCallback(resolved)
        d.addErrback(_as_transport_error, req)
        d.chainDeferred(result)
        return result

    def send_stateless(self, req: SIPRequest) -> defer.Deferred[None]:
        """Send a request outside any transaction (the ACK for a 2xx, s.13.2.2.4).

        A request sent before keeps its Via: the ACK resent for a retransmitted 2xx is the
        same ACK, branch included (s.13.2.2.4, s.17.1.1.3), not a new request."""
        def resolved(peer: Any) -> defer.Deferred[None]:
            if "Via" not in req.headers:
                self._add_via(req, peer)
            sent: defer.Deferred[None] = self.transport.send(req, peer)
            return sent

        return self._resolve(req).addCallback(resolved)

    def send_response(self, resp: SIPResponse, peer: Any) -> defer.Deferred[None]:
        return defer.maybeDeferred(self.transport.send, resp, peer)

    # -- internals (the INVITE client uses them too) -------------------------------------

    def _target(self, req: SIPRequest) -> str:
        """s.8.1.2: the next hop is the first Route (loose routing) or the Request-URI."""
        routes = req.headers.get_all("Route")
        if not routes:
            return req.uri
        try:
            return parse_name_addr(routes[0]).uri
        except SIPParseError as e:
            raise SIPTransportError(f"bad Route {routes[0]!r}: {e.reason}") from None

    def _resolve(self, req: SIPRequest) -> defer.Deferred[Any]:
        try:
            target = self._target(req)
        except SIPTransportError as e:
            return defer.fail(e)
        size = wire_length(req) + 80  # + our Via, added once the transport is known
        return defer.maybeDeferred(self.transport.resolve, target, size)

    def _udp_fallback(self, req: SIPRequest, peer: Any) -> Peer | None:
        """The UDP peer to retry ``req`` at if it goes to ``peer`` over TCP only because of
        its size (s.18.1.1), else None."""
        if getattr(peer, "transport", None) != "tcp":
            return None
        try:
            return udp_fallback(self._target(req), Peer("tcp", peer.host, peer.port))
        except SIPTransportError:
            return None

    def _retry_over_udp(self, failure: Failure, req: SIPRequest, peer: Any,
                        fallback: Peer) -> defer.Deferred[SIPResponse] | Failure:
        """s.18.1.1: a request moved to TCP for its size whose connection failed (refused,
        reset: nothing was sent) is retried over UDP with a UDP Via; a timeout is not."""
        if not isinstance(failure.value, SIPTransportError):
            return failure
        log.info("{method} to {peer} over TCP failed ({err}); retrying over UDP",
                 method=req.method, peer=str(peer), err=failure.getErrorMessage())
        self._add_via(req, fallback)
        return self._start_client(req, fallback)

    def _peer_failed(self, peer: Any) -> None:
        """RFC 3263 s.4.3: a request to ``peer`` could not be sent or got no answer (Timer
        B/F); when an SRV walk chose that peer, the next request to that domain goes to the
        next target first (for ``dns.SIPResolver.mark_unreachable``'s time). Not on stop."""
        if self.table.stopped:
            return
        resolver = getattr(self.transport, "resolver", None)
        if resolver is not None and resolver.found_by_srv(peer):
            if not resolver.is_unreachable(peer):
                log.info("{peer} failed: other SRV targets are tried first for a while",
                         peer=str(peer))
            resolver.mark_unreachable(peer)

    def _add_via(self, req: SIPRequest, peer: Any) -> None:
        """Our Via on top (replacing one already added on a retry), fresh branch, rport."""
        proto, host, port = self.transport.local_via(peer)
        bare = host.strip("[]")
        branch = new_branch()
        sent_by = f"[{bare}]" if ":" in bare else bare
        req.headers.remove("Via")
        req.headers.prepend("Via", f"SIP/2.0/{proto.upper()} {sent_by}:{port};branch={branch};rport")
        # what parsing that line gives, kept so the transaction key does not parse it again
        req.headers._typed["via"] = Via(proto.upper(), bare, int(port),
                                        {"branch": branch, "rport": None})
        if req.method == "INVITE" and req.headers.get("Contact") == self.contact():
            req.headers.set("Contact", self.contact_for(peer))

    def _start_client(self, req: SIPRequest, peer: Any) -> defer.Deferred[SIPResponse]:
        """Run a non-INVITE client transaction for ``req`` (Via already on it) to ``peer``."""
        if self.table.stopped:
            return defer.fail(SIPTransportError("SIP stack stopped"))
        d: defer.Deferred[SIPResponse] = defer.Deferred()

        def on_response(resp: SIPResponse) -> None:
            if resp.status >= 200 and not d.called:
                d.callback(resp)

        def on_end(reason: str) -> None:
            if reason in ("timeout", "transport_error"):
                self._peer_failed(peer)
            if d.called:
                return
            if reason == "timeout":
                d.errback(SIPTimeout(f"no final response to {req.method} (Timer F)"))
            else:
                why = f": {entry.error}" if entry.error else ""
                d.errback(SIPTransportError(f"{req.method} could not be sent{why}"))

        core = NonInviteClientTransaction(req, reliable=is_reliable(peer), timers=self.timers)
        entry = ClientEntry(core, peer, on_response, on_end)
        if not self.table.add_client(entry):
            return defer.fail(SIPTransportError("transaction table full"))
        self.table.perform(entry, core.start())
        return d


def _as_transport_error(failure: Failure, req: SIPRequest) -> Failure:
    """Resolution and send failures reach the caller as SIPTransportError (s.8.1.3.1)."""
    if isinstance(failure.value, (SIPTimeout, SIPTransportError)):
        return failure
    raise SIPTransportError(f"cannot send {req.method} to {req.uri}: "
                            f"{failure.getErrorMessage()}")


def _name_addr(uri: str) -> str:
    """A From/To value for ``uri``, which may already be a name-addr."""
    return uri if "<" in uri else f"<{uri}>"
