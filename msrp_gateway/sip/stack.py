"""The SIP stack: a Twisted adapter that runs the transaction machines of ``transaction.py``.

It owns the transaction and dialog tables (both bounded), performs the machines' actions with
the injected reactor clock and the transport, and does the UA core's share of RFC 3261:
CANCEL (200, then 487 for the INVITE), OPTIONS (200), Max-Forwards (483), in-dialog requests
to their dialog (481 when unknown) and everything else out of dialog to ``router``.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from typing import Any, Callable, Iterable

from twisted.internet import defer
from twisted.internet.base import DelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from .dialog import ALLOW, Dialog, new_tag
from .message import Headers, SIPParseError, SIPRequest, SIPResponse, Via, make_response
from .records import wire_length
from .invite import MAX_FORKS, TIMER_C, InviteClient  # noqa: F401 - constants re-exported
from .peers import Peer, is_reliable
from .resolution import udp_fallback
from .table import ClientEntry, Entry, TransactionTable
from .transaction import (
    DEFAULT_TIMERS,
    MAGIC_COOKIE,
    InviteServerTransaction,
    NonInviteClientTransaction,
    NonInviteServerTransaction,
    SIPFinalResponse,
    SIPTimeout,
    SIPTransportError,
    TimerSettings,
    response_key,
    server_key,
)
from .uri import parse_name_addr

__all__ = [
    "SIPStack",
    "ServerTransaction",
    "InviteClient",
    "Dialog",
    "SIPTimeout",
    "SIPTransportError",
    "SIPFinalResponse",
]

log = Logger()

MAX_TRANSACTIONS = 50000  # server + client transactions in progress
# Answered non-INVITE requests kept for Timer J (64*T1) to absorb retransmissions over UDP:
# 32 s at 8,000 MESSAGE/s is 256,000 of them, so they are kept compact (key -> response)
# and the oldest are dropped early past this bound.
MAX_COMPLETED = 400000
MAX_DIALOGS = 20000
TU_GUARD_NON_INVITE = 32.0  # a request the application never answers gets 500 after it
TU_GUARD_INVITE = 180.0  # ... and an INVITE 408
USER_AGENT = "msrpgw"
SUPPORTED_METHODS = ALLOW


def new_branch() -> str:
    """A Via branch with the RFC 3261 magic cookie and 80 random bits (s.8.1.1.7)."""
    return MAGIC_COOKIE + secrets.token_hex(10)


class ServerTransaction(Entry):
    """A request we received, as the application sees it: answer it with ``respond``."""

    __slots__ = ("request", "source", "on_cancel", "dialog", "_local_tag", "_stack", "_guard")

    is_server = True

    def __init__(self, stack: SIPStack, core: Any, request: SIPRequest, source: Any,
                 peer: Any, key: Any = None) -> None:
        self._stack = stack
        self.core = core
        self.request = request
        self.source = source
        self.peer = peer  # where responses go (s.18.2.2)
        self.timers = {}
        self.key = core.key if key is None else key
        self.on_cancel: Callable[[], None] | None = None
        self.dialog: Dialog | None = None  # set for in-dialog requests
        self._local_tag: str | None = None
        self.merge_key = None
        self._guard: DelayedCall | None = None

    @property
    def local_tag(self) -> str:
        """The To tag of our responses (unless the request has one), made on first use."""
        if self._local_tag is None:
            self._local_tag = new_tag()
        return self._local_tag

    @property
    def responded(self) -> bool:
        """True once a final response was sent."""
        return bool(self.core.final_sent)

    def respond(self, status: int, reason: str | None = None, *,
                headers: Iterable[tuple[str, str]] = (), body: bytes = b"",
                content_type: str | None = None, to_tag: str | None = None) -> SIPResponse | None:
        """Send a response; after a final one, further calls are ignored (None returned).

        A 2xx to an INVITE goes through a dialog: out of dialog that is ``stack.accept``.
        """
        if self.core.final_sent:
            log.debug("second final response to {method} ignored", method=self.request.method)
            return None
        if self.request.method == "INVITE" and 200 <= status < 300:
            self._stop_guard()
            if self.dialog is None:
                dialog = self._stack.accept(self, body=body, content_type=content_type,
                                            headers=headers)
                return dialog._pending.response if dialog._pending is not None else None
            resp = self._stack._build_response(self, status, reason, headers, body,
                                               content_type, to_tag, contact=True)
            self._stack.table.perform(self, self.core.on_response(resp))
            self.dialog.send_2xx(resp, self.peer, already_sent=True)
            return resp
        early = self.request.method == "INVITE" and 100 < status < 200  # s.12.1.1
        resp = self._stack._build_response(self, status, reason, headers, body, content_type,
                                           to_tag, contact=early)
        if status >= 200:
            self._stop_guard()
        self._stack.table.perform(self, self.core.on_response(resp))
        return resp

    def _stop_guard(self) -> None:
        if self._guard is not None and self._guard.active():
            self._guard.cancel()
        self._guard = None

    def deliver(self, msg: Any) -> None:
        if msg.method == "ACK":
            self._stack._ack_to_dialog(msg)
        else:
            self._stack._dispatch(self)

    def terminated(self, reason: str) -> None:
        self._stop_guard()
        if reason != "normal":
            log.info("{method} server transaction ended: {reason}",
                     method=self.request.method, reason=reason)


class SIPStack:
    """Transactions, dialogs and the UA core over one ``SIPTransport`` (docs/internals.md)."""

    def __init__(self, reactor: Any, transport: Any, *, local_uri_host: str,
                 outbound_proxy: str | None = None,
                 router: Callable[[ServerTransaction], Any],
                 max_transactions: int = MAX_TRANSACTIONS, max_dialogs: int = MAX_DIALOGS,
                 max_completed: int = MAX_COMPLETED,
                 timers: TimerSettings = DEFAULT_TIMERS, user_agent: str = USER_AGENT) -> None:
        self.reactor = reactor
        self.transport = transport
        self.local_uri_host = local_uri_host
        self.outbound_proxy = outbound_proxy
        self.router = router
        self.max_dialogs = max_dialogs
        self.timers = timers
        self.user_agent = user_agent
        self.table = TransactionTable(reactor, transport, max_transactions=max_transactions,
                                      max_completed=max_completed)
        self._dialogs: dict[tuple[str, str, str], Dialog] = {}
        # INVITEs answered 2xx in the last 64*T1, for 2xx from other forks (s.13.2.2.4);
        # insertion order is expiry order, so pruning pops from the front
        self._uac_invites: OrderedDict[tuple[str | None, str], tuple[float, InviteClient]] = \
            OrderedDict()
        self._cseq = secrets.randbelow(2 ** 16) + 1
        self._invite_clients: set[InviteClient] = set()
        transport.on_message = self._on_message

    # -- what the UA and gateway call ----------------------------------------------------

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

    def invite(self, req: SIPRequest) -> InviteClient:
        """Send an INVITE; the returned ``InviteClient`` fires the dialog or the failure."""
        client = InviteClient(self, req)
        if self.table.stopped:
            client.fail(SIPTransportError("SIP stack stopped"))
            return client
        self._invite_clients.add(client)
        if len(self._dialogs) >= self.max_dialogs:
            client.fail(SIPTransportError("dialog table full"))
            return client

        def failed(f: Failure) -> None:
            client.fail(SIPTransportError(f"cannot reach {req.uri}: {f.getErrorMessage()}"))

        def resolved(peer: Any) -> None:
            client.start(peer, fallback=self._udp_fallback(req, peer))

        self._resolve(req).addCallback(resolved).addErrback(failed)
        return client

    def accept(self, txn: ServerTransaction, *, body: bytes, content_type: str | None,
               headers: Iterable[tuple[str, str]] = ()) -> Dialog:
        """Answer an initial INVITE 200 and make its dialog; the 200 is resent until the ACK
        (``dialog.confirmed`` fires) or 64*T1 (it errbacks ``SIPTimeout``, BYE sent)."""
        req = txn.request
        dialog = Dialog.from_uas(self, req, txn.local_tag)
        txn.dialog = dialog
        self._dialogs[dialog.key] = dialog
        resp = self._build_response(txn, 200, None, headers, body, content_type, None,
                                    contact=True)
        self.table.perform(txn, txn.core.on_response(resp))
        dialog.send_2xx(resp, txn.peer, already_sent=True)
        return dialog

    def dialogs(self) -> list[Dialog]:
        return list(self._dialogs.values())

    @property
    def transaction_count(self) -> int:
        return len(self.table)

    @property
    def max_transactions(self) -> int:
        return self.table.max_transactions

    @property
    def max_completed(self) -> int:
        return self.table.max_completed

    # -- what dialogs call (DialogOwner) -------------------------------------------------

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

    def stop(self) -> None:
        """Cancel every timer of every transaction and dialog (service shutdown, tests);
        no timer starts after it."""
        for entry in self.table.stop():
            # requests of ours still in flight fail now (SIPTransportError), none hangs
            entry.terminated("normal" if entry.is_server else "transport_error")
        for dialog in list(self._dialogs.values()):
            dialog.stop_timers()
        self._uac_invites.clear()
        for client in list(self._invite_clients):
            client.fail(SIPTransportError("SIP stack stopped"))

    def forget_dialog(self, dialog: Dialog) -> None:
        if self._dialogs.get(dialog.key) is dialog:
            del self._dialogs[dialog.key]

    def _remember_answered(self, client: InviteClient, local_tag: str) -> None:
        now = self.reactor.seconds()
        self._prune_answered(now)
        self._uac_invites[(client.request.call_id, local_tag)] = \
            (now + 64 * self.timers.t1, client)

    def _prune_answered(self, now: float) -> None:
        table = self._uac_invites
        while table:
            key, (expires, _) = next(iter(table.items()))
            if expires > now:
                break
            del table[key]

    def _answered_invite(self, call_id: str | None, local_tag: str) -> InviteClient | None:
        self._prune_answered(self.reactor.seconds())
        found = self._uac_invites.get((call_id, local_tag))
        return found[1] if found is not None else None

    # -- internals: sending --------------------------------------------------------------

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

    def _build_response(self, txn: ServerTransaction, status: int, reason: str | None,
                        headers: Iterable[tuple[str, str]], body: bytes,
                        content_type: str | None, to_tag: str | None, *,
                        contact: bool) -> SIPResponse:
        extra = list(headers)
        if contact and not any(name.lower() in ("contact", "m") for name, _ in extra):
            extra.insert(0, ("Contact", self.contact_for(txn.source)))
        if status == 405 and not any(name.lower() == "allow" for name, _ in extra):
            extra.append(("Allow", SUPPORTED_METHODS))
        return make_response(txn.request, status, reason,
                             to_tag=to_tag or (txn.local_tag if status > 100 else None),
                             headers=extra, body=body, content_type=content_type)

    # -- internals: receiving ------------------------------------------------------------

    def _on_message(self, msg: SIPRequest | SIPResponse, source: Any) -> None:
        try:
            if isinstance(msg, SIPResponse):
                self._on_response(msg)
            else:
                self._on_request(msg, source)
        except SIPParseError as e:
            log.info("dropped a message from {source}: {reason}", source=source,
                     reason=e.reason)

    def _on_response(self, resp: SIPResponse) -> None:
        key = response_key(resp)
        entry = self.table.clients.get(key) if key is not None else None
        if entry is not None:
            self.table.perform(entry, entry.core.on_response(resp))
            return
        if 200 <= resp.status < 300 and resp.cseq[1] == "INVITE":
            # a 2xx retransmission (the client transaction ended on the first one)
            dialog = self._dialogs.get((resp.call_id or "", resp.from_tag or "",
                                        resp.to_tag or ""))
            if dialog is not None:
                dialog.on_2xx_retransmission(resp)
                return
            client = self._answered_invite(resp.call_id, resp.from_tag or "")
            if client is not None:
                client.on_2xx(resp)  # another fork answered: ACK and BYE it
                return
        log.debug("stray {status} response dropped", status=resp.status)

    def _on_request(self, req: SIPRequest, source: Any) -> None:
        method = req.method
        key = server_key(req)
        txn = self.table.servers.get(key)
        if method == "ACK":
            if txn is not None:
                self.table.perform(txn, txn.core.on_request(req))
            else:
                self._ack_to_dialog(req)
            return
        if txn is not None:
            self.table.perform(txn, txn.core.on_request(req))  # a retransmission
            return
        done = self.table.completed(key)
        if done is not None:  # a retransmission of a request answered in the last 64*T1
            self.send_response(done[0], done[1]).addErrback(lambda f: None)
            return
        peer = self.transport.response_peer(req, source)
        if self.table.full:
            self._stateless_reply(req, peer, 503, [("Retry-After", "5")])
            log.warn("transaction table full ({n}): 503 to {method}", n=self.max_transactions,
                     method=method)
            return
        merge_key = None
        if method != "CANCEL" and not req.to_tag:
            merge_key = (req.from_tag, req.call_id, req.cseq[0], method)
            if self.table.is_merged(merge_key):
                self._stateless_reply(req, peer, 482, [])  # s.8.2.2.2: merged request
                return
        core_cls = InviteServerTransaction if method == "INVITE" else NonInviteServerTransaction
        core = core_cls(req, reliable=is_reliable(peer), timers=self.timers)
        txn = ServerTransaction(self, core, req, source, peer, key)
        txn.merge_key = merge_key
        self.table.add_server(txn)
        self.table.perform(txn, core.start())  # 100 Trying for INVITE, then _dispatch via Deliver

    def _stateless_reply(self, req: SIPRequest, peer: Any, status: int,
                         headers: list[tuple[str, str]]) -> None:
        resp = make_response(req, status, to_tag=new_tag(), headers=headers)
        self.send_response(resp, peer).addErrback(lambda f: None)

    def _dispatch(self, txn: ServerTransaction) -> None:
        """The UA core's decisions for a new request (s.8.2, s.9.2, s.11, s.12.2.2)."""
        req = txn.request
        method = req.method
        if method == "CANCEL":
            self._on_cancel(txn)
            return
        mf = req.max_forwards
        if mf is not None and mf == 0 and method != "OPTIONS":
            txn.respond(483)
            return
        if method != "BYE" and "Require" in req.headers:
            # s.8.2.2.3: we support no extension that a Require may name
            txn.respond(420, headers=[("Unsupported", ", ".join(req.headers.get_all("Require")))])
            return
        if req.to_tag:
            dialog = self._dialogs.get((req.call_id or "", req.to_tag, req.from_tag or ""))
            if dialog is None or (dialog.terminated and not (dialog.closing and method == "BYE")):
                txn.respond(481)
                return
            txn.dialog = dialog
            self._guarded(dialog.receive, txn)
        elif method == "OPTIONS":
            txn.respond(200, headers=[("Allow", SUPPORTED_METHODS),
                                      ("Accept", "application/sdp, text/plain")])
        elif method == "INVITE" and len(self._dialogs) >= self.max_dialogs:
            txn.respond(503, headers=[("Retry-After", "5")])
        else:
            self._guarded(self.router, txn)
        if not txn.responded and not self.table.stopped:
            guard = TU_GUARD_INVITE if method == "INVITE" else TU_GUARD_NON_INVITE
            txn._guard = self.reactor.callLater(guard, self._tu_silent, txn)

    def _guarded(self, fn: Callable[[ServerTransaction], Any], txn: ServerTransaction) -> None:
        try:
            fn(txn)
        except Exception:
            log.failure("handler for {method} failed", method=txn.request.method)
            if not txn.responded:
                txn.respond(500)

    def _tu_silent(self, txn: ServerTransaction) -> None:
        txn._guard = None
        if not txn.responded:
            log.warn("{method} left unanswered by the application", method=txn.request.method)
            txn.respond(408 if txn.request.method == "INVITE" else 500)

    def _on_cancel(self, txn: ServerTransaction) -> None:
        """s.9.2: 200 to the CANCEL, 487 to its INVITE if still unanswered; 481 if unknown."""
        invite = self.table.servers.get(server_key(txn.request, "INVITE"))
        if not isinstance(invite, ServerTransaction) or invite.request.method != "INVITE":
            txn.respond(481)
            return
        txn.respond(200)
        if not invite.responded:
            invite.respond(487)
            if invite.on_cancel is not None:
                try:
                    invite.on_cancel()
                except Exception:
                    log.failure("on_cancel failed")

    def _ack_to_dialog(self, ack: SIPRequest) -> None:
        dialog = self._dialogs.get((ack.call_id or "", ack.to_tag or "", ack.from_tag or ""))
        if dialog is not None:
            dialog.on_ack(ack)
        else:
            log.debug("ACK for no dialog dropped")


def _as_transport_error(failure: Failure, req: SIPRequest) -> Failure:
    """Resolution and send failures reach the caller as SIPTransportError (s.8.1.3.1)."""
    if isinstance(failure.value, (SIPTimeout, SIPTransportError)):
        return failure
    raise SIPTransportError(f"cannot send {req.method} to {req.uri}: "
                            f"{failure.getErrorMessage()}")


def _name_addr(uri: str) -> str:
    """A From/To value for ``uri``, which may already be a name-addr."""
    return uri if "<" in uri else f"<{uri}>"
