"""An INVITE we send, as the UA sees it (RFC 3261 s.13.2, s.9.1): the dialog of its 2xx or
its failure, CANCEL after a provisional, Timer C, and 2xx from other forks (ACKed and ended).
Before any provisional response, an INVITE to an SRV-chosen target that fails at the
transport or stays silent moves to the next target (RFC 3263 s.4.3; the policy is
``uac``'s: FAILOVER_SILENCE, 64*T1 in all from the first send).

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
from .uac import FAILOVER_SILENCE, TryEntry

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
        self._tried: list[Any] = []  # targets of s.4.3 failover, in the order tried
        self._deadline: float | None = None  # Timer B from the first send, over all tries
        self._failover: DelayedCall | None = None  # silence, then the deadline

    def start(self, peer: Any, fallback: Any = None) -> None:
        """Send the INVITE to ``peer`` (resolved by the stack) in its client transaction;
        ``fallback`` is the UDP peer to retry at if TCP, chosen only for the INVITE's size,
        cannot connect (s.18.1.1)."""
        if self._done:
            return
        stack = self._stack
        if stack.table.stopped:
            self.fail(SIPTransportError("SIP stack stopped"))
            return
        self._fallback = fallback
        now = stack.reactor.seconds()
        if self._deadline is None:
            self._deadline = now + 64 * stack.timers.t1  # Timer B (s.17.1.1.2)
        previous = self._entry.peer if self._entry is not None else None
        self._tried.append(peer)
        headers = self.request.headers
        if previous is not None and headers.get("Contact") == stack.contact_for(previous):
            # our Contact named the last try's transport: the dialog's requests would
            # come back that way
            headers.set("Contact", stack.contact_for(peer))
        stack._add_via(self.request, peer)
        core = InviteClientTransaction(self.request, reliable=is_reliable(peer),
                                       timers=stack.timers)
        entry = TryEntry(core, peer, self)
        if not stack.table.add_client(entry):
            self.fail(SIPTransportError("transaction table full"))
            return
        self._entry = entry
        if stack._from_srv(peer):
            self._arm(min(now + FAILOVER_SILENCE * stack.timers.t1, self._deadline))
        stack.table.perform(entry, core.start())

    # -- RFC 3263 s.4.3 failover ---------------------------------------------------------

    def try_response(self, entry: ClientEntry, resp: SIPResponse) -> None:
        """From this INVITE's transaction entry (``uac.TryEntry``): a stale try is ignored."""
        if entry is self._entry:
            self._disarm()  # it answered: no failover from now on
            self._on_response(resp)

    def try_end(self, entry: ClientEntry, reason: str) -> None:
        if entry is self._entry:
            self._on_end(reason)

    def _arm(self, when: float) -> None:
        self._disarm()
        reactor = self._stack.reactor
        self._failover = reactor.callLater(max(when - reactor.seconds(), 0.0),
                                           self._silent)

    def _disarm(self) -> None:
        if self._failover is not None and self._failover.active():
            self._failover.cancel()
        self._failover = None

    def _may_fail_over(self) -> bool:
        entry = self._entry
        stack = self._stack
        return (entry is not None and not self._done and not self._provisional
                and not self._cancel_requested and not stack.table.stopped
                and self._deadline is not None
                and stack.reactor.seconds() < self._deadline
                and stack._from_srv(entry.peer))

    def _silent(self) -> None:
        """No response at all from this try for FAILOVER_SILENCE (the next target, if any),
        or by the deadline (SIPTimeout, as Timer B)."""
        self._failover = None
        entry = self._entry
        stack = self._stack
        deadline = self._deadline
        if self._done or entry is None or deadline is None or self._provisional:
            return
        if stack.reactor.seconds() >= deadline - 1e-6:
            stack.table.drop(entry)
            stack._peer_failed(entry.peer)
            self.fail(SIPTimeout(f"no response to INVITE within 64*T1 (Timer B) from "
                                 f"{len(self._tried)} target(s)"))
            return
        if not self._may_fail_over():
            self._arm(deadline)
            return
        tries = len(self._tried)

        def found(peer: Any) -> None:
            if self._entry is not entry or self._done or self._provisional or \
                    len(self._tried) != tries:
                return  # it answered, or ended and the request moved on meanwhile
            if peer is None or not self._may_fail_over():
                self._arm(deadline)  # no other target (or cancelled): this one until then
                return
            log.debug("INVITE to {peer}: no answer in {s} s; trying the next target {next}",
                      peer=str(entry.peer), s=FAILOVER_SILENCE * stack.timers.t1,
                      next=str(peer))
            stack.table.drop(entry)
            stack._peer_failed(entry.peer)
            self.start(peer)

        stack._next_target(self.request, self._tried).addCallback(found)

    def _next_or_fail(self, err: Exception) -> None:
        """s.4.3 after a try ended (transport error, Timer B): the next target, else
        ``err``, the last target's outcome."""
        entry = self._entry
        if entry is None or not self._may_fail_over():
            self.fail(err)
            return
        tries = len(self._tried)

        def found(peer: Any) -> None:
            if self._done or len(self._tried) != tries:
                return  # finished, or a look-up begun for silence already moved it on
            if self._cancel_requested:
                self.fail(SIPFinalResponse(487, "Request Terminated"))  # none pending
                return
            if peer is None or self._stack.table.stopped or self._deadline is None or \
                    self._stack.reactor.seconds() >= self._deadline:
                self.fail(err)
                return
            log.debug("INVITE to {peer} failed ({err}); trying the next target {next}",
                      peer=str(entry.peer), err=str(err), next=str(peer))
            self.start(peer)

        self._stack._next_target(self.request, self._tried).addCallback(found)

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
        self._disarm()
        if reason in ("timeout", "transport_error") and self._entry is not None:
            self._stack._peer_failed(self._entry.peer)  # s.4.3 marks (SRV peers only)
        if reason == "timeout":
            self._next_or_fail(SIPTimeout("no final response to INVITE (Timer B)"))
        elif reason == "transport_error":
            entry, fallback = self._entry, self._fallback
            self._fallback = None
            if fallback is not None and not self._provisional and not self._cancel_requested \
                    and not self._stack.table.stopped:
                log.info("INVITE to {peer} over TCP failed ({err}); retrying over UDP",
                         peer=str(entry.peer if entry else ""), err=entry.error if entry else "")
                self.start(fallback)  # with a UDP Via, and Contact if it named TCP
                return
            why = f": {entry.error}" if entry is not None and entry.error else ""
            self._next_or_fail(SIPTransportError(f"INVITE could not be sent{why}"))

    def _finish(self) -> None:
        self._done = True
        self._disarm()
        self._stack._invite_clients.discard(self)
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def fail(self, err: Exception) -> None:
        if self._done:
            return
        self._finish()
        self.deferred.errback(err)

