"""The transaction table: runs the machines of ``transaction.py`` on a reactor.

It holds the server and client transactions in progress (bounded), performs their actions
(send through the transport, timers on the injected clock, deliver, terminate), and keeps
answered non-INVITE requests compactly for Timer J. What a request *means* (CANCEL,
OPTIONS, dialogs, the router) is the stack's business, not this table's.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

from twisted.internet import defer
from twisted.internet.base import DelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..stats import SIPCounters
from .message import SIPRequest, SIPResponse
from .transaction import Action, CancelTimer, Deliver, Send, StartTimer, State, Terminated

__all__ = ["ClientEntry", "Entry", "TransactionTable"]

log = Logger(namespace="msrp_gateway.sip.stack")  # operators know the stack's namespace


class Entry:
    """What every transaction in the table has: its machine, its peer and its timers."""

    __slots__ = ("core", "peer", "timers", "key", "merge_key")

    is_server = False
    core: Any
    peer: Any
    timers: dict[str, DelayedCall]
    key: Any
    merge_key: Any

    def deliver(self, msg: Any) -> None:
        raise NotImplementedError

    def terminated(self, reason: str) -> None:
        raise NotImplementedError


class ClientEntry(Entry):
    """A request we sent: results go to ``on_response`` / ``on_end`` of its owner."""

    __slots__ = ("on_response", "on_end", "error")

    def __init__(self, core: Any, peer: Any, on_response: Callable[[SIPResponse], None],
                 on_end: Callable[[str], None]) -> None:
        self.core = core
        self.peer = peer
        self.timers = {}
        self.key = core.key
        self.merge_key = None
        self.on_response = on_response
        self.on_end = on_end
        self.error: str | None = None  # why the last send failed, for the owner's error

    def deliver(self, msg: Any) -> None:
        self.on_response(msg)

    def terminated(self, reason: str) -> None:
        self.on_end(reason)


class TransactionTable:
    """Transactions in progress by key, and answered requests kept for Timer J.

    ``servers``/``clients`` are read by the stack to match messages; everything that
    changes them goes through the methods here, so the bounds hold.
    """

    def __init__(self, reactor: Any, transport: Any, *, max_transactions: int,
                 max_completed: int, counters: SIPCounters | None = None) -> None:
        self.reactor = reactor
        # tm:UAC_transactions and the final-response classes of our requests are bumped here
        self.counters = counters if counters is not None else SIPCounters()
        self.transport = transport
        self.max_transactions = max_transactions
        self.max_completed = max_completed
        self.servers: dict[Any, Entry] = {}
        self.clients: dict[Any, Entry] = {}
        self.stopped = False
        # Timer J, compactly: key -> (final response, peer, merge key), expiry order in fifo
        self._completed: dict[Any, tuple[SIPResponse, Any, Any]] = {}
        self._completed_fifo: deque[tuple[float, Any]] = deque()
        self._completed_sweep: DelayedCall | None = None
        # Timer K, compactly: the entry stays in ``clients`` (its machine absorbs retransmitted
        # responses) and waits in expiry order for one shared call, not a DelayedCall each
        self._absorbing: deque[tuple[float, Entry]] = deque()
        self._absorbing_sweep: DelayedCall | None = None
        # s.8.2.2.2: out-of-dialog requests in progress or answered, by From tag, Call-ID and
        # CSeq: the same request on another branch (forked back to us) is a merged request
        self._merged: dict[Any, Any] = {}

    def __len__(self) -> int:
        return len(self.servers) + len(self.clients)

    @property
    def full(self) -> bool:
        return len(self) >= self.max_transactions

    # -- adding ------------------------------------------------------------------------

    def add_server(self, entry: Entry) -> None:
        """A new server transaction (the caller checked ``full`` and ``is_merged``)."""
        if entry.merge_key is not None:
            self._merged[entry.merge_key] = entry.key
        self.servers[entry.key] = entry

    def add_client(self, entry: Entry) -> bool:
        """A new client transaction; False (and a log line) when the table is full."""
        if self.full:
            log.warn("transaction table full ({n}): request not sent", n=self.max_transactions)
            return False
        self.clients[entry.key] = entry
        self.counters.uac_transactions += 1
        return True

    def is_merged(self, merge_key: Any) -> bool:
        return merge_key in self._merged

    def completed(self, key: Any) -> tuple[SIPResponse, Any] | None:
        """(final response, peer) of a request answered in the last 64*T1, if any."""
        done = self._completed.get(key)
        return (done[0], done[1]) if done is not None else None

    # -- performing actions ------------------------------------------------------------

    def perform(self, entry: Entry, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Send):
                self._send(entry, action.message)
            elif isinstance(action, StartTimer):
                if self.stopped or entry.core.state is State.TERMINATED:
                    continue  # e.g. a send that failed at once already ended the machine
                if action.name == "J" and entry.is_server:
                    self._keep_completed(entry, action.delay)
                    continue
                if action.name == "K" and not entry.is_server and self._absorb(entry, action.delay):
                    continue
                old = entry.timers.get(action.name)
                if old is not None and old.active():
                    old.cancel()
                entry.timers[action.name] = self.reactor.callLater(
                    action.delay, self._fire, entry, action.name)
            elif isinstance(action, CancelTimer):
                call = entry.timers.pop(action.name, None)
                if call is not None and call.active():
                    call.cancel()
            elif isinstance(action, Deliver):
                msg = action.message
                if isinstance(msg, SIPResponse) and msg.status >= 200:
                    # a client machine delivers its final response once (2xx forks aside)
                    self.counters.finals[msg.status // 100 if msg.status < 700 else 6] += 1
                entry.deliver(msg)
            elif isinstance(action, Terminated):
                self.drop(entry)
                entry.terminated(action.reason)

    def _fire(self, entry: Entry, name: str) -> None:
        entry.timers.pop(name, None)
        self.perform(entry, entry.core.on_timer(name))

    def _send(self, entry: Entry, msg: SIPRequest | SIPResponse) -> None:
        try:
            d = self.transport.send(msg, entry.peer)
        except Exception as e:  # a transport bug must not leave the transaction hanging
            d = defer.fail(e)
        d.addErrback(self._send_failed, entry)

    def _send_failed(self, failure: Failure, entry: Entry) -> None:
        log.info("send to {peer} failed: {err}", peer=entry.peer, err=failure.getErrorMessage())
        if isinstance(entry, ClientEntry):
            entry.error = failure.getErrorMessage()
        self.perform(entry, entry.core.on_transport_error())

    # -- removing ----------------------------------------------------------------------

    def drop(self, entry: Entry, *, keep_merge: bool = False) -> None:
        """Remove ``entry`` and cancel its timers, without telling its owner."""
        for call in entry.timers.values():
            if call.active():
                call.cancel()
        entry.timers.clear()
        if entry.is_server:
            table = self.servers
            if not keep_merge:
                self._unmerge(entry.merge_key, entry.key)
        else:
            table = self.clients
        if table.get(entry.key) is entry:
            del table[entry.key]

    def _keep_completed(self, entry: Entry, delay: float) -> None:
        """Timer J, compactly: the machine is dropped; its key maps to the final response,
        resent for retransmissions until one shared sweep expires it (s.17.2.2)."""
        self.drop(entry, keep_merge=True)
        entry.terminated("normal")
        resp = entry.core.last_response
        if resp is None:
            self._unmerge(entry.merge_key, entry.key)
            return
        completed = self._completed
        fifo = self._completed_fifo
        while len(completed) >= self.max_completed and fifo:
            self._forget_completed(fifo.popleft()[1])  # past the bound: the oldest go early
        completed[entry.key] = (resp, entry.peer, entry.merge_key)
        fifo.append((self.reactor.seconds() + delay, entry.key))
        if self._completed_sweep is None and not self.stopped:
            self._completed_sweep = self.reactor.callLater(delay, self._sweep_completed)

    def _sweep_completed(self) -> None:
        self._completed_sweep = None
        now = self.reactor.seconds()
        fifo = self._completed_fifo
        while fifo and fifo[0][0] <= now:
            self._forget_completed(fifo.popleft()[1])
        if fifo:
            self._completed_sweep = self.reactor.callLater(max(fifo[0][0] - now, 0.0),
                                                           self._sweep_completed)

    def _absorb(self, entry: Entry, delay: float) -> bool:
        """Timer K (s.17.1.2.2) through the shared sweep; False when its expiry would come
        before one already waiting (another T4), so that it takes a timer of its own."""
        due = self.reactor.seconds() + delay
        fifo = self._absorbing
        if fifo and fifo[-1][0] > due:
            return False
        fifo.append((due, entry))
        if self._absorbing_sweep is None:
            self._absorbing_sweep = self.reactor.callLater(delay, self._sweep_absorbing)
        return True

    def _sweep_absorbing(self) -> None:
        """Fire Timer K of every entry due by now (1 ns of float slack: a rescheduled call
        lands on the due time, not one rounding step before it), then wait for the next."""
        self._absorbing_sweep = None
        now = self.reactor.seconds()
        fifo = self._absorbing
        while fifo and fifo[0][0] <= now + 1e-9:
            entry = fifo.popleft()[1]
            if self.clients.get(entry.key) is entry:
                self.perform(entry, entry.core.on_timer("K"))
        if fifo and not self.stopped:
            self._absorbing_sweep = self.reactor.callLater(max(fifo[0][0] - now, 0.0),
                                                           self._sweep_absorbing)

    def _forget_completed(self, key: Any) -> None:
        done = self._completed.pop(key, None)
        if done is not None:
            self._unmerge(done[2], key)

    def _unmerge(self, merge_key: Any, key: Any) -> None:
        if merge_key is not None and self._merged.get(merge_key) == key:
            del self._merged[merge_key]

    def stop(self) -> list[Entry]:
        """Cancel every timer, forget everything; returns the entries that were in progress
        (the stack tells their owners). No timer starts after it."""
        self.stopped = True
        entries = [*self.servers.values(), *self.clients.values()]
        for entry in entries:
            self.drop(entry)
        if self._completed_sweep is not None and self._completed_sweep.active():
            self._completed_sweep.cancel()
        self._completed_sweep = None
        if self._absorbing_sweep is not None and self._absorbing_sweep.active():
            self._absorbing_sweep.cancel()
        self._absorbing_sweep = None
        self._absorbing.clear()
        self._completed.clear()
        self._completed_fifo.clear()
        self._merged.clear()
        return entries
