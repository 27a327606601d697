"""Sending requests: what ``stack.SIPStack`` does as a UAC outside dialogs' own state.

``RequestSender`` builds out-of-dialog requests, resolves their next hop (s.8.1.2), puts our
Via on them and runs non-INVITE client transactions in the shared ``TransactionTable``; it
also sends responses and stateless requests.  ``SIPStack`` is a ``RequestSender`` (the
INVITE client, ``invite.InviteClient``, uses these methods through the stack).

RFC 3263 s.4.3 failover, our policy: a request whose next hop an SRV walk chose is sent
again — same request, new Via branch, new client transaction — to the next target when
the transport fails (nothing could be sent) or when the target has not answered at all for
``FAILOVER_SILENCE`` (16*T1 = 8 s: four UDP retransmissions) and a next target exists. A
request has 64*T1 (Timer F; Timer B for an INVITE) in all from its first send: no try
starts after that and the last one is cut there (SIPTimeout). An INVITE fails over only
before any provisional response. Every failed target is marked unreachable
(``SIPResolver.mark_unreachable``). The caller sees the last target's outcome.
"""

from __future__ import annotations

import secrets
from typing import Any, Iterable

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from .dialog import new_tag
from .dns import TargetsExhausted
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

__all__ = ["FAILOVER_SILENCE", "RequestSender", "TryEntry", "new_branch"]

log = Logger(namespace="msrp_gateway.sip.stack")  # operators know the stack's namespace


FAILOVER_SILENCE = 16  # in T1: an SRV target silent this long gives way to the next one


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
            return _Tries(self, req, peer).deferred

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

    def _resolve(self, req: SIPRequest, exclude: list[Peer] | None = None,
                 ) -> defer.Deferred[Any]:
        try:
            target = self._target(req)
        except SIPTransportError as e:
            return defer.fail(e)
        # + our Via, added once the transport is known (a retry has it already)
        size = wire_length(req) + (0 if "Via" in req.headers else 80)
        if exclude:
            return defer.maybeDeferred(self.transport.resolve, target, size,
                                       exclude=tuple(exclude))
        return defer.maybeDeferred(self.transport.resolve, target, size)

    def _resolver(self) -> Any:
        """The transport's RFC 3263 resolver, or None (test fakes may have none)."""
        return getattr(self.transport, "resolver", None)

    def _from_srv(self, peer: Any) -> bool:
        """Whether an SRV walk chose ``peer`` (then s.4.3 failover applies to it)."""
        resolver = self._resolver()
        return resolver is not None and isinstance(peer, Peer) and \
            bool(resolver.found_by_srv(peer))

    def _next_target(self, req: SIPRequest, tried: list[Peer]) -> defer.Deferred[Any]:
        """s.4.3: where ``req`` goes after the ``tried`` targets failed: the walk again
        (answers cached within their TTL) through the transport's ``resolve(...,
        exclude=tried)``, which keeps its TLS names and size rules. Fires
        None when there is none (all tried, or the lookup failed); never errbacks."""
        if self._resolver() is None or self.table.stopped:
            return defer.succeed(None)
        d = self._resolve(req, tried)

        def found(peer: Any) -> Any:
            return None if peer in tried else peer

        def none(f: Failure) -> None:
            if not isinstance(f.value, TargetsExhausted):
                log.info("no next target for {method}: {err}", method=req.method,
                         err=f.getErrorMessage())
            return None

        return d.addCallbacks(found, none)

    def _udp_fallback(self, req: SIPRequest, peer: Any) -> Peer | None:
        """The UDP peer to retry ``req`` at if it goes to ``peer`` over TCP only because of
        its size (s.18.1.1), else None; never for an SRV-chosen peer (s.4.3 failover goes
        to the next target instead: the SRV port is TCP's, not UDP's)."""
        if getattr(peer, "transport", None) != "tcp" or self._from_srv(peer):
            return None
        try:
            return udp_fallback(self._target(req), Peer("tcp", peer.host, peer.port))
        except SIPTransportError:
            return None

    def _peer_failed(self, peer: Any) -> None:
        """RFC 3263 s.4.3: a request to ``peer`` could not be sent or got no answer (Timer
        B/F); when an SRV walk chose that peer, the next request to that domain goes to the
        next target first (for ``dns.SIPResolver.mark_unreachable``'s time). Not on stop."""
        if self.table.stopped:
            return
        resolver = self._resolver()
        if resolver is not None and self._from_srv(peer):
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


class _Tries:
    """One non-INVITE request through its targets (s.4.3, the policy in the module's
    docstring; s.18.1.1's retry over UDP for a non-SRV peer): ``deferred`` fires its final
    response or errbacks the last try's SIPTimeout / SIPTransportError."""

    __slots__ = ("sender", "req", "deferred", "tried", "deadline", "entry", "timer",
                 "heard", "fallback", "done")

    def __init__(self, sender: RequestSender, req: SIPRequest, peer: Any) -> None:
        self.sender = sender
        self.req = req
        self.deferred: defer.Deferred[SIPResponse] = defer.Deferred()
        self.tried: list[Any] = []
        self.deadline = 0.0  # 64*T1 (Timer F) from the first send to an SRV-chosen peer
        self.entry: ClientEntry | None = None
        self.timer: Any = None
        self.heard = False
        self.fallback = sender._udp_fallback(req, peer)
        self.done = False
        self.start(peer)

    def start(self, peer: Any) -> None:
        sender = self.sender
        table = sender.table
        if table.stopped:
            self.fail(SIPTransportError("SIP stack stopped"))
            return
        self.tried.append(peer)
        self.heard = False
        self.entry = None
        sender._add_via(self.req, peer)
        core = NonInviteClientTransaction(self.req, reliable=is_reliable(peer),
                                          timers=sender.timers)
        entry = TryEntry(core, peer, self)
        if not table.add_client(entry):
            self.fail(SIPTransportError("transaction table full"))
            return
        self.entry = entry
        if sender._from_srv(peer):
            now = table.reactor.seconds()
            if not self.deadline:
                self.deadline = now + 64 * sender.timers.t1
            self.arm(min(now + FAILOVER_SILENCE * sender.timers.t1, self.deadline))
        table.perform(entry, core.start())

    def arm(self, when: float) -> None:
        self.disarm()
        reactor = self.sender.table.reactor
        self.timer = reactor.callLater(max(when - reactor.seconds(), 0.0), self.on_timer)

    def disarm(self) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None

    def try_response(self, entry: ClientEntry, resp: SIPResponse) -> None:
        if entry is not self.entry:
            return
        self.heard = True
        if resp.status >= 200 and not self.done:
            self.done = True
            self.disarm()
            self.entry = None  # its Timer K may keep the entry a while: not the request
            self.deferred.callback(resp)

    def try_end(self, entry: ClientEntry, reason: str) -> None:
        if self.done or entry is not self.entry:
            return
        sender = self.sender
        method = self.req.method
        err: Exception
        if reason not in ("timeout", "transport_error"):
            self.fail(SIPTransportError(f"{method} ended without a final response"))
            return
        sender._peer_failed(entry.peer)
        if reason == "timeout":
            err = SIPTimeout(f"no final response to {method} (Timer F)")
        else:
            why = f": {entry.error}" if entry.error else ""
            err = SIPTransportError(f"{method} could not be sent{why}")
        self.entry = None
        self.disarm()
        fallback, self.fallback = self.fallback, None
        if reason == "transport_error" and fallback is not None and not sender.table.stopped:
            # s.18.1.1: moved to TCP for its size, the connection failed (nothing was sent):
            # retried over UDP with a UDP Via; a timeout is not
            log.info("{method} to {peer} over TCP failed ({err}); retrying over UDP",
                     method=method, peer=str(entry.peer), err=entry.error or "")
            self.start(fallback)
            return
        self.next_or(err, entry)

    def next_or(self, err: Exception, failed: ClientEntry) -> None:
        """s.4.3: the same request to the next target, else ``err`` to the caller."""
        sender = self.sender
        if not sender._from_srv(failed.peer) or sender.table.stopped or \
                sender.table.reactor.seconds() >= self.deadline:
            self.fail(err)
            return

        def found(peer: Any) -> None:
            if self.done:
                return
            if peer is None or sender.table.reactor.seconds() >= self.deadline:
                self.fail(err)
                return
            log.debug("{method} to {peer} failed ({err}); trying the next target {next}",
                      method=self.req.method, peer=str(failed.peer), err=str(err),
                      next=str(peer))
            self.start(peer)

        sender._next_target(self.req, self.tried).addCallback(found)

    def on_timer(self) -> None:
        """The try is silent past FAILOVER_SILENCE (next target, if any) or the request's
        time is up (SIPTimeout, whatever the target said so far)."""
        self.timer = None
        entry = self.entry
        if self.done or entry is None:
            return
        sender = self.sender
        if sender.table.reactor.seconds() >= self.deadline - 1e-6:
            sender.table.drop(entry)
            if not self.heard:
                sender._peer_failed(entry.peer)
            self.fail(SIPTimeout(f"no final response to {self.req.method} within 64*T1 "
                                 f"(Timer F) from {len(self.tried)} target(s)"))
            return
        if self.heard:  # it is alive (a provisional): its answer is awaited
            self.arm(self.deadline)
            return

        def found(peer: Any) -> None:
            if self.done or self.entry is not entry:
                return  # it answered or ended meanwhile
            if peer is None:
                self.arm(self.deadline)  # no other target: this one until Timer F
                return
            log.debug("{method} to {peer}: no answer in {s} s; trying the next target {next}",
                      method=self.req.method, peer=str(entry.peer),
                      s=FAILOVER_SILENCE * sender.timers.t1, next=str(peer))
            sender.table.drop(entry)
            sender._peer_failed(entry.peer)
            self.start(peer)

        sender._next_target(self.req, self.tried).addCallback(found)

    def fail(self, err: Exception) -> None:
        if self.done:
            return
        self.done = True
        self.disarm()
        self.deferred.errback(err)


class TryEntry(ClientEntry):
    """The client transaction of one try of a request: its results go to ``owner``'s
    ``try_response(entry, msg)`` / ``try_end(entry, reason)`` with the entry itself, so
    that a try given up for the next target (s.4.3) that still ends late — a TCP connect
    failing after we moved on — is told apart from the current one."""

    __slots__ = ("owner",)

    def __init__(self, core: Any, peer: Any, owner: Any) -> None:
        super().__init__(core, peer, _ignore, _ignore)
        self.owner = owner

    def deliver(self, msg: Any) -> None:
        self.owner.try_response(self, msg)

    def terminated(self, reason: str) -> None:
        self.owner.try_end(self, reason)


def _ignore(_: Any) -> None:
    pass


def _as_transport_error(failure: Failure, req: SIPRequest) -> Failure:
    """Resolution and send failures reach the caller as SIPTransportError (s.8.1.3.1)."""
    if isinstance(failure.value, (SIPTimeout, SIPTransportError)):
        return failure
    raise SIPTransportError(f"cannot send {req.method} to {req.uri}: "
                            f"{failure.getErrorMessage()}")


def _name_addr(uri: str) -> str:
    """A From/To value for ``uri``, which may already be a name-addr."""
    return uri if "<" in uri else f"<{uri}>"
