"""An INVITE we send, as the UA sees it (RFC 3261 s.13.2, s.9.1): the dialog of its 2xx or
its failure, CANCEL after a provisional, Timer C, and 2xx from other forks (ACKed and ended).

``InviteClient`` is a part of ``stack.SIPStack``: it runs its transaction through the stack's
table and registers its dialogs there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from twisted.internet import defer
from twisted.internet.base import DelayedCall
from twisted.logger import Logger

from .dialog import Dialog
from .message import SIPRequest, SIPResponse
from .peers import is_reliable
from .table import ClientEntry
from .transaction import (
    InviteClientTransaction,
    SIPFinalResponse,
    SIPTimeout,
    SIPTransportError,
    invite_companion,
)

if TYPE_CHECKING:
    from .stack import SIPStack

__all__ = ["MAX_FORKS", "TIMER_C", "InviteClient"]

log = Logger(namespace="msrp_gateway.sip.stack")

MAX_FORKS = 16  # 2xx with distinct To tags handled per INVITE; more are dropped
TIMER_C = 180.0  # s.16.6 (for proxies; used here too): a ringing INVITE is CANCELled after it


class InviteClient:
    """An INVITE we sent: ``deferred`` fires a confirmed ``Dialog`` or errbacks.

    Errbacks: ``SIPFinalResponse`` (>= 300, 487 after ``cancel()``), ``SIPTimeout`` (Timer B,
    or no answer 64*T1 after CANCEL), ``SIPTransportError``.  ``on_provisional`` sees 1xx.
    """

    def __init__(self, stack: SIPStack, request: SIPRequest) -> None:
        self._stack = stack
        self.request = request
        self.deferred: defer.Deferred[Dialog] = defer.Deferred()
        self.on_provisional: Callable[[SIPResponse], None] | None = None
        self.dialog: Dialog | None = None
        self._answered: dict[tuple[str, str, str], Dialog] = {}  # per 2xx To tag (forks)
        self._entry: ClientEntry | None = None
        self._provisional = False
        self._cancel_requested = False
        self._cancel_sent = False
        self._done = False
        self._timer: DelayedCall | None = None  # Timer C, then the 64*T1 after CANCEL
        self._fallback: Any = None

    def start(self, peer: Any, fallback: Any = None) -> None:
        """Send the INVITE to ``peer`` (resolved by the stack) in its client transaction;
        ``fallback`` is the UDP peer to retry at if TCP, chosen only for the INVITE's size,
        cannot connect (s.18.1.1)."""
        if self._done:
            return
        self._fallback = fallback
        stack = self._stack
        stack._add_via(self.request, peer)
        core = InviteClientTransaction(self.request, reliable=is_reliable(peer),
                                       timers=stack.timers)
        entry = ClientEntry(core, peer, self._on_response, self._on_end)
        if not stack.table.add_client(entry):
            self.fail(SIPTransportError("transaction table full"))
            return
        self._entry = entry
        stack.table.perform(entry, core.start())

    def cancel(self) -> None:
        """CANCEL the INVITE (s.9.1); sent once a provisional response has come."""
        if self._done or self._cancel_requested:
            return
        self._cancel_requested = True
        if self._entry is None:
            self.fail(SIPFinalResponse(487, "Request Terminated"))  # never sent
        elif self._provisional:
            self._send_cancel()

    def _send_cancel(self) -> None:
        if self._cancel_sent or self._entry is None:
            return
        self._cancel_sent = True
        cancel = invite_companion(self.request, "CANCEL")
        d = self._stack._start_client(cancel, self._entry.peer)
        d.addErrback(lambda f: log.info("CANCEL not answered: {err}", err=f.value))
        self._set_timer(64 * self._stack.timers.t1, self._cancel_timeout)

    def _set_timer(self, delay: float, fn: Callable[[], None]) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if not self._stack.table.stopped:
            self._timer = self._stack.reactor.callLater(delay, fn)

    def _cancel_timeout(self) -> None:
        """s.9.1: no final response 64*T1 after CANCEL: the INVITE is given up."""
        self._timer = None
        if self._entry is not None:
            self._stack.table.drop(self._entry)
        self.fail(SIPTimeout("no final response after CANCEL"))

    def _on_response(self, resp: SIPResponse) -> None:
        status = resp.status
        if status < 200:
            if not self._provisional:
                self._provisional = True
                if self._cancel_requested:
                    self._send_cancel()
                else:
                    self._set_timer(TIMER_C, self.cancel)
            if self.on_provisional is not None and not self._done:
                self.on_provisional(resp)
            return
        if status < 300:
            self.on_2xx(resp)
            return
        self.fail(SIPFinalResponse(status, resp.reason, resp))

    def on_2xx(self, resp: SIPResponse) -> None:
        stack = self._stack
        dialog = Dialog.from_uac(stack, self.request, resp)
        seen = self._answered.get(dialog.key)
        if seen is not None:
            seen.on_2xx_retransmission(resp)  # our ACK was lost, even if BYE ended it since
            return
        if len(self._answered) >= MAX_FORKS:
            return
        self._answered[dialog.key] = dialog
        stack._remember_answered(self, dialog.local_tag)
        dialog.send_ack(resp)
        stack._dialogs[dialog.key] = dialog
        if self._done or self._cancel_requested:
            # s.13.2.2.4/s.15: a 2xx we no longer want (cancelled, or a second fork) is
            # ACKed and ended at once
            dialog.confirmed.callback(dialog)
            dialog.bye().addErrback(lambda f: None)
            self.fail(SIPFinalResponse(487, "Request Terminated", resp))
            return
        self.dialog = dialog
        self._finish()
        dialog.confirmed.callback(dialog)
        self.deferred.callback(dialog)

    def _on_end(self, reason: str) -> None:
        if reason == "timeout":
            self.fail(SIPTimeout("no final response to INVITE (Timer B)"))
        elif reason == "transport_error":
            entry, fallback = self._entry, self._fallback
            if fallback is not None and not self._provisional and not self._cancel_requested:
                log.info("INVITE to {peer} over TCP failed ({err}); retrying over UDP",
                         peer=str(entry.peer if entry else ""), err=entry.error if entry else "")
                headers = self.request.headers
                if entry is not None and headers.get("Contact") == \
                        self._stack.contact_for(entry.peer):
                    # our TCP Contact would bring the dialog's requests back over TCP
                    headers.set("Contact", self._stack.contact_for(fallback))
                self.start(fallback)
                return
            why = f": {entry.error}" if entry is not None and entry.error else ""
            self.fail(SIPTransportError(f"INVITE could not be sent{why}"))

    def _finish(self) -> None:
        self._done = True
        self._stack._invite_clients.discard(self)
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def fail(self, err: Exception) -> None:
        if self._done:
            return
        self._finish()
        self.deferred.errback(err)
