"""Receiving requests: what ``stack.SIPStack`` does as a UAS (the UA core's share, s.8.2).

A new request gets a server transaction (``ServerTransaction``, what the application
answers); ``IncomingRequests`` then decides where it goes: CANCEL answered 200 and its
INVITE 487 (s.9.2), OPTIONS 200 (s.11), Max-Forwards 0 483, ``Require`` 420, in-dialog
requests to their dialog (481 when unknown, s.12.2.2) and everything else out of dialog to
the stack's ``router``.  Retransmissions, merged requests (482) and a full table (503) are
answered here too.  It is a part of the stack, as ``invite.InviteClient`` is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable

from twisted.internet.base import DelayedCall
from twisted.logger import Logger

from .dialog import ALLOW, Dialog, new_tag
from .message import SIPRequest, SIPResponse, make_response
from .peers import is_reliable
from .table import Entry
from .transaction import InviteServerTransaction, NonInviteServerTransaction, server_key

if TYPE_CHECKING:
    from .stack import SIPStack

__all__ = [
    "ServerTransaction",
    "IncomingRequests",
    "SUPPORTED_METHODS",
    "TU_GUARD_INVITE",
    "TU_GUARD_NON_INVITE",
]

log = Logger(namespace="msrp_gateway.sip.stack")  # operators know the stack's namespace

TU_GUARD_NON_INVITE = 32.0  # a request the application never answers gets 500 after it
TU_GUARD_INVITE = 180.0  # ... and an INVITE 408
SUPPORTED_METHODS = ALLOW


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
        incoming = self._stack._incoming
        if self.request.method == "INVITE" and 200 <= status < 300:
            self._stop_guard()
            if self.dialog is None:  # (accept counts its 2xx)
                dialog = self._stack.accept(self, body=body, content_type=content_type,
                                            headers=headers)
                return dialog._pending.response if dialog._pending is not None else None
            self._stack.count_final(status)
            resp = incoming.build_response(self, status, reason, headers, body,
                                           content_type, to_tag, contact=True)
            self._stack.table.perform(self, self.core.on_response(resp))
            self.dialog.send_2xx(resp, self.peer, already_sent=True)
            return resp
        early = self.request.method == "INVITE" and 100 < status < 200  # s.12.1.1
        resp = incoming.build_response(self, status, reason, headers, body, content_type,
                                       to_tag, contact=early)
        if status >= 200:
            self._stop_guard()
            self._stack.count_final(status)
        self._stack.table.perform(self, self.core.on_response(resp))
        return resp

    def _stop_guard(self) -> None:
        if self._guard is not None and self._guard.active():
            self._guard.cancel()
        self._guard = None

    def deliver(self, msg: Any) -> None:
        if msg.method == "ACK":
            self._stack._incoming.ack_to_dialog(msg)
        else:
            self._stack._incoming.dispatch(self)

    def terminated(self, reason: str) -> None:
        self._stop_guard()
        if reason != "normal":
            log.info("{method} server transaction ended: {reason}",
                     method=self.request.method, reason=reason)


class IncomingRequests:
    """The stack's request side: transactions for new requests, the UA core's decisions."""

    def __init__(self, stack: SIPStack) -> None:
        self._stack = stack

    def on_request(self, req: SIPRequest, source: Any) -> None:
        stack = self._stack
        table = stack.table
        method = req.method
        key = server_key(req)
        txn = table.servers.get(key)
        if method == "ACK":
            if txn is not None:
                table.perform(txn, txn.core.on_request(req))
            else:
                self.ack_to_dialog(req)
            return
        if txn is not None:
            table.perform(txn, txn.core.on_request(req))  # a retransmission
            return
        done = table.completed(key)
        if done is not None:  # a retransmission of a request answered in the last 64*T1
            stack.send_response(done[0], done[1]).addErrback(lambda f: None)
            return
        peer = stack.transport.response_peer(req, source)
        if table.full:
            self._stateless_reply(req, peer, 503, [("Retry-After", "5")])
            log.warn("transaction table full ({n}): 503 to {method}", n=stack.max_transactions,
                     method=method)
            return
        merge_key = None
        if method != "CANCEL" and not req.to_tag:
            merge_key = (req.from_tag, req.call_id, req.cseq[0], method)
            if table.is_merged(merge_key):
                self._stateless_reply(req, peer, 482, [])  # s.8.2.2.2: merged request
                return
        core_cls = InviteServerTransaction if method == "INVITE" else NonInviteServerTransaction
        core = core_cls(req, reliable=is_reliable(peer), timers=stack.timers)
        txn = ServerTransaction(stack, core, req, source, peer, key)
        txn.merge_key = merge_key
        table.add_server(txn)
        stack.stats.uas_transactions += 1
        table.perform(txn, core.start())  # 100 Trying for INVITE, then dispatch via Deliver

    def build_response(self, txn: ServerTransaction, status: int, reason: str | None,
                       headers: Iterable[tuple[str, str]], body: bytes,
                       content_type: str | None, to_tag: str | None, *,
                       contact: bool) -> SIPResponse:
        extra = list(headers)
        if contact and not any(name.lower() in ("contact", "m") for name, _ in extra):
            extra.insert(0, ("Contact", self._stack.contact_for(txn.source)))
        if status == 405 and not any(name.lower() == "allow" for name, _ in extra):
            extra.append(("Allow", SUPPORTED_METHODS))
        return make_response(txn.request, status, reason,
                             to_tag=to_tag or (txn.local_tag if status > 100 else None),
                             headers=extra, body=body, content_type=content_type)

    def dispatch(self, txn: ServerTransaction) -> None:
        """The UA core's decisions for a new request (s.8.2, s.9.2, s.11, s.12.2.2)."""
        stack = self._stack
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
            dialog = stack._dialogs.get((req.call_id or "", req.to_tag, req.from_tag or ""))
            if dialog is None or (dialog.terminated and not (dialog.closing and method == "BYE")):
                txn.respond(481)
                return
            txn.dialog = dialog
            self._guarded(dialog.receive, txn)
        elif method == "OPTIONS":
            txn.respond(200, headers=[("Allow", SUPPORTED_METHODS),
                                      ("Accept", "application/sdp, text/plain")])
        elif method == "INVITE" and len(stack._dialogs) >= stack.max_dialogs:
            txn.respond(503, headers=[("Retry-After", "5")])
        else:
            self._guarded(stack.router, txn)
        if not txn.responded and not stack.table.stopped:
            guard = TU_GUARD_INVITE if method == "INVITE" else TU_GUARD_NON_INVITE
            txn._guard = stack.reactor.callLater(guard, self._tu_silent, txn)

    def ack_to_dialog(self, ack: SIPRequest) -> None:
        dialog = self._stack._dialogs.get((ack.call_id or "", ack.to_tag or "",
                                           ack.from_tag or ""))
        if dialog is not None:
            dialog.on_ack(ack)
        else:
            self._stack.stats.drop_requests += 1
            log.debug("ACK for no dialog dropped")

    def _stateless_reply(self, req: SIPRequest, peer: Any, status: int,
                         headers: list[tuple[str, str]]) -> None:
        resp = make_response(req, status, to_tag=new_tag(), headers=headers)
        self._stack.send_response(resp, peer).addErrback(lambda f: None)

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
        invite = self._stack.table.servers.get(server_key(txn.request, "INVITE"))
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
