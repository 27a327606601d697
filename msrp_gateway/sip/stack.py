"""The SIP stack: a Twisted adapter that runs the transaction machines of ``transaction.py``.

It owns the transaction and dialog tables (both bounded), performs the machines' actions with
the injected reactor clock and the transport, and does the UA core's share of RFC 3261:
CANCEL (200, then 487 for the INVITE), OPTIONS (200), Max-Forwards (483), in-dialog requests
to their dialog (481 when unknown) and everything else out of dialog to ``router``.

Its parts, one job each: ``uac.RequestSender`` (its base: building, resolving and sending
requests, responses and stateless ACKs), ``uas.IncomingRequests`` (new requests to
transactions, dialogs and the router), ``invite.InviteClient`` (one INVITE we sent).  This
module holds what ties them together: the dialog table, INVITE and its 2xx, responses to
their client transactions, and ``stop``.  Every name of those parts that callers import from
here still is importable from here.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Iterable

from twisted.logger import Logger
from twisted.python.failure import Failure

from ..stats import SIPCounters
from .dialog import Dialog
from .invite import MAX_FORKS, TIMER_C, InviteClient  # noqa: F401 - constants re-exported
from .message import SIPParseError, SIPRequest, SIPResponse
from .table import TransactionTable
from .transaction import (
    DEFAULT_TIMERS,
    SIPFinalResponse,
    SIPTimeout,
    SIPTransportError,
    TimerSettings,
    response_key,
)
from .uac import RequestSender, new_branch  # noqa: F401 - re-exported
from .uas import (  # noqa: F401 - constants re-exported
    SUPPORTED_METHODS,
    TU_GUARD_INVITE,
    TU_GUARD_NON_INVITE,
    IncomingRequests,
    ServerTransaction,
)

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
USER_AGENT = "msrpgw"


class SIPStack(RequestSender):
    """Transactions, dialogs and the UA core over one ``SIPTransport`` (docs/internals.md)."""

    def __init__(self, reactor: Any, transport: Any, *, local_uri_host: str,
                 outbound_proxy: str | None = None,
                 router: Callable[[ServerTransaction], Any],
                 max_transactions: int = MAX_TRANSACTIONS, max_dialogs: int = MAX_DIALOGS,
                 max_completed: int = MAX_COMPLETED,
                 timers: TimerSettings = DEFAULT_TIMERS, user_agent: str = USER_AGENT) -> None:
        #: OpenSIPS' core: and tm: counters (``stats.register_sip`` names them)
        self.stats = SIPCounters()
        table = TransactionTable(reactor, transport, max_transactions=max_transactions,
                                 max_completed=max_completed, counters=self.stats)
        super().__init__(transport, table, local_uri_host=local_uri_host,
                         outbound_proxy=outbound_proxy, timers=timers, user_agent=user_agent)
        self.reactor = reactor
        self.router = router
        self.max_dialogs = max_dialogs
        self._dialogs: dict[tuple[str, str, str], Dialog] = {}
        # INVITEs answered 2xx in the last 64*T1, for 2xx from other forks (s.13.2.2.4);
        # insertion order is expiry order, so pruning pops from the front
        self._uac_invites: OrderedDict[tuple[str | None, str], tuple[float, InviteClient]] = \
            OrderedDict()
        self._invite_clients: set[InviteClient] = set()
        self._incoming = IncomingRequests(self)
        transport.on_message = self._on_message
        # For core:err_requests/err_replies: a transport that calls it for each message it
        # could not parse (it answers or drops those itself) has them counted here.
        transport.on_malformed = self.count_malformed

    # -- what the UA and gateway call ----------------------------------------------------

    def invite(self, req: SIPRequest) -> InviteClient:
        """Send an INVITE; the returned ``InviteClient`` fires the dialog or the failure."""
        client = InviteClient(self, req)  # it does its own s.4.3 failover and marks
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
        self.count_final(200)
        dialog = Dialog.from_uas(self, req, txn.local_tag)
        txn.dialog = dialog
        self._dialogs[dialog.key] = dialog
        resp = self._incoming.build_response(txn, 200, None, headers, body, content_type,
                                             None, contact=True)
        self.table.perform(txn, txn.core.on_response(resp))
        dialog.send_2xx(resp, txn.peer, already_sent=True)
        return dialog

    def count_final(self, status: int) -> None:
        """tm:local_replies and the final class of a server transaction we answer (once:
        the callers are the first final response of each)."""
        stats = self.stats
        stats.local_replies += 1
        stats.finals[status // 100 if status < 700 else 6] += 1

    def count_malformed(self, error: SIPParseError) -> None:
        """core:err_replies when ``error.message`` is a response, else core:err_requests
        (a datagram too broken to tell is most likely a request)."""
        if isinstance(error.message, SIPResponse):
            self.stats.err_replies += 1
        else:
            self.stats.err_requests += 1

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

    # -- what dialogs call (DialogOwner; the sending side is RequestSender's) -------------

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

    # -- internals: what the transport hands us -------------------------------------

    def _on_message(self, msg: SIPRequest | SIPResponse, source: Any) -> None:
        stats = self.stats
        try:
            if isinstance(msg, SIPResponse):
                stats.rcv_replies += 1
                self._on_response(msg)
            else:
                stats.rcv_requests += 1
                self._incoming.on_request(msg, source)
        except SIPParseError as e:
            # a header read lazily turned out malformed: counted as OpenSIPS' err_*
            if isinstance(msg, SIPResponse):
                stats.err_replies += 1
            else:
                stats.err_requests += 1
            log.info("dropped a message from {source}: {reason}", source=source,
                     reason=e.reason)

    def _on_response(self, resp: SIPResponse) -> None:
        key = response_key(resp)
        entry = self.table.clients.get(key) if key is not None else None
        if entry is not None:
            self.stats.received_replies += 1
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
        self.stats.drop_replies += 1
        log.debug("stray {status} response dropped", status=resp.status)
