"""RFC 3261 s.17 transactions as sans-IO state machines.

Each transaction takes inputs (``start()``, ``on_request``, ``on_response``, ``on_timer(name)``,
``on_transport_error()``) and returns a list of actions (``Send``, ``StartTimer``,
``CancelTimer``, ``Deliver``, ``Terminated``) that an adapter (``stack.py``) performs.  Nothing
here touches a socket, a reactor or the clock, so tests drive the RFC timer schedule by hand.

Timer actions come before ``Deliver`` so the machine is settled when the TU runs.

Choices the RFC leaves open, stated once:
- A server INVITE transaction sends 100 Trying at once (s.17.2.1 allows it immediately).
- A server INVITE transaction that sends a 2xx enters the RFC 6026 "Accepted" state for
  Timer L (64*T1) so that retransmitted INVITEs are absorbed instead of reaching the TU as new
  requests; the 2xx itself is retransmitted by the dialog (s.13.3.1.4).
- A client INVITE transaction terminates on 2xx (s.17.1.1.2); later 2xx retransmissions are
  matched by the stack to the dialog, which re-sends its ACK.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Union

from .message import Headers, SIPRequest, SIPResponse, make_response

# RFC 3261 s.17.1.1.1 and Table 4.
T1 = 0.5  # round-trip time estimate
T2 = 4.0  # maximum retransmit interval for non-INVITE requests and INVITE responses
T4 = 5.0  # maximum duration a message remains in the network
TIMER_B = 64 * T1  # INVITE client transaction timeout
TIMER_D = 32.0  # wait time for response retransmissions (unreliable transports)
TIMER_F = 64 * T1  # non-INVITE client transaction timeout
TIMER_H = 64 * T1  # wait time for ACK receipt
TIMER_J = 64 * T1  # wait time for non-INVITE request retransmissions (unreliable)
TIMER_L = 64 * T1  # RFC 6026 s.8.7: wait in Accepted for INVITE retransmissions
MAGIC_COOKIE = "z9hG4bK"  # s.8.1.1.7: branch of an RFC 3261 compliant element


class SIPTimeout(Exception):
    """A transaction timed out (Timer B or F): no final response arrived."""

    code = 408
    reason = "Request Timeout"


class SIPTransportError(Exception):
    """The request could not be sent (no route, refused, reset): treat it as 503 (s.8.1.3.1)."""

    code = 503
    reason = "Service Unavailable"


class SIPFinalResponse(Exception):
    """An INVITE was refused with a final response >= 300."""

    def __init__(self, code: int, reason: str, response: SIPResponse | None = None) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason
        self.response = response


@dataclass(slots=True)
class Send:
    """Hand this message to the transport, to the transaction's peer."""

    message: SIPRequest | SIPResponse


@dataclass(slots=True)
class StartTimer:
    """(Re)start the named timer; a running timer of that name is replaced."""

    name: str
    delay: float


@dataclass(slots=True)
class CancelTimer:
    name: str


@dataclass(slots=True)
class Deliver:
    """Pass this message up to the transaction user."""

    message: SIPRequest | SIPResponse


@dataclass(slots=True)
class Terminated:
    """The transaction is over; ``reason`` is "normal", "timeout" or "transport_error"."""

    reason: str


Action = Union[Send, StartTimer, CancelTimer, Deliver, Terminated]


class State(enum.Enum):
    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


@dataclass(slots=True, frozen=True)
class TimerSettings:
    """T1/T2/T4 as configured (s.17: T1 may be raised on high-latency networks)."""

    t1: float = T1
    t2: float = T2
    t4: float = T4


DEFAULT_TIMERS = TimerSettings()


# -- matching (s.17.1.3 and s.17.2.3) -------------------------------------------------------


def client_key(branch: str, method: str) -> tuple[str, str]:
    """Key of a client transaction: its branch and CSeq method (s.17.1.3)."""
    return (branch, method)


def response_key(resp: SIPResponse) -> tuple[str, str] | None:
    """Key of the client transaction a response belongs to, or None if it has no branch."""
    branch = resp._peek_top_via().branch
    if not branch:
        return None
    return (branch, resp.cseq[1])


def server_key(req: SIPRequest, method: str | None = None) -> tuple[object, ...]:
    """Key of the server transaction a request belongs to (s.17.2.3).

    ACK maps to INVITE; ``method`` overrides the request's (CANCEL looks up its INVITE).
    A branch without the magic cookie falls back to RFC 2543 matching on Request-URI,
    From tag, Call-ID, CSeq number and top Via (the To tag is left out, since the ACK of a
    non-2xx carries the tag our response added).
    """
    if method is None:
        method = "INVITE" if req.method == "ACK" else req.method
    via = req._peek_top_via()
    branch = via.branch or ""
    if branch.startswith(MAGIC_COOKIE):
        return (branch, via.host.lower(), via.port, method)
    return ("2543", req.uri, req.from_tag, req.call_id, req.cseq[0], via.host.lower(), via.port,
            branch, method)


def invite_companion(invite: SIPRequest, method: str, to: str | None = None) -> SIPRequest:
    """The CANCEL (s.9.1) or non-2xx ACK (s.17.1.1.3) of ``invite``: its top Via (same
    branch), Route, From, Call-ID and CSeq number, with ``method``; To as given (the ACK
    takes the response's, with its tag) else the INVITE's."""
    headers = Headers()
    headers.add("Via", invite.headers.get_all("Via")[0])
    for route in invite.headers.get_all("Route"):
        headers.add("Route", route)
    headers.add("Max-Forwards", "70")
    headers.add("From", invite.headers.get("From") or "")
    headers.add("To", to or invite.headers.get("To") or "")
    headers.add("Call-ID", invite.call_id or "")
    headers.add("CSeq", f"{invite.cseq[0]} {method}")
    return SIPRequest(method, invite.uri, headers)


class _Machine:
    """What every transaction machine shares: its state and how it ends."""

    __slots__ = ("state",)

    state: State

    def on_transport_error(self) -> list[Action]:
        """s.17.1.1.2 / s.17.1.2.2 / s.17.2.4: a transport failure ends it at once."""
        if self.state is State.TERMINATED:
            return []
        return self._terminate("transport_error")

    def _terminate(self, reason: str) -> list[Action]:
        self.state = State.TERMINATED
        return [Terminated(reason)]


# -- client transactions ---------------------------------------------------------------------


class ClientTransaction(_Machine):
    """Common part of the two client machines (s.17.1)."""

    __slots__ = ("request", "reliable", "timers", "_interval")

    def __init__(self, request: SIPRequest, *, reliable: bool,
                 timers: TimerSettings = DEFAULT_TIMERS) -> None:
        self.request = request
        self.reliable = reliable
        self.timers = timers
        self.state = State.CALLING
        self._interval = timers.t1

    @property
    def key(self) -> tuple[str, str]:
        return client_key(self.request._peek_top_via().branch or "", self.request.method)


class InviteClientTransaction(ClientTransaction):
    """s.17.1.1: Calling -> Proceeding -> Completed -> Terminated (2xx ends it at once)."""

    __slots__ = ("ack",)

    def __init__(self, request: SIPRequest, *, reliable: bool,
                 timers: TimerSettings = DEFAULT_TIMERS) -> None:
        super().__init__(request, reliable=reliable, timers=timers)
        self.ack: SIPRequest | None = None

    def start(self) -> list[Action]:
        self.state = State.CALLING
        actions: list[Action] = [Send(self.request)]
        if not self.reliable:
            actions.append(StartTimer("A", self._interval))
        actions.append(StartTimer("B", 64 * self.timers.t1))
        return actions

    def on_response(self, resp: SIPResponse) -> list[Action]:
        status = resp.status
        state = self.state
        if state in (State.CALLING, State.PROCEEDING):
            if status < 200:
                actions: list[Action] = []
                if state is State.CALLING:
                    self.state = State.PROCEEDING
                    actions += [CancelTimer("A"), CancelTimer("B")]
                actions.append(Deliver(resp))
                return actions
            if status < 300:
                self.state = State.TERMINATED
                return [CancelTimer("A"), CancelTimer("B"), Deliver(resp), Terminated("normal")]
            self.ack = self.build_ack(resp)
            self.state = State.COMPLETED
            actions = [CancelTimer("A"), CancelTimer("B"), Send(self.ack)]
            if self.reliable:
                self.state = State.TERMINATED
                return actions + [Deliver(resp), Terminated("normal")]
            return actions + [StartTimer("D", TIMER_D), Deliver(resp)]
        if state is State.COMPLETED and status >= 300 and self.ack is not None:
            return [Send(self.ack)]  # retransmitted final response: ACK again, tell nobody
        return []

    def on_timer(self, name: str) -> list[Action]:
        if name == "A" and self.state is State.CALLING:
            self._interval *= 2  # s.17.1.1.2: Timer A doubles without a cap; B bounds it
            return [Send(self.request), StartTimer("A", self._interval)]
        if name == "B" and self.state is State.CALLING:
            return [CancelTimer("A")] + self._terminate("timeout")
        if name == "D" and self.state is State.COMPLETED:
            return self._terminate("normal")
        return []

    def build_ack(self, resp: SIPResponse) -> SIPRequest:
        """s.17.1.1.3: the ACK for a non-2xx final response, part of this transaction."""
        return invite_companion(self.request, "ACK", resp.headers.get("To"))


class NonInviteClientTransaction(ClientTransaction):
    """s.17.1.2: Trying -> Proceeding -> Completed -> Terminated."""

    __slots__ = ()

    def start(self) -> list[Action]:
        self.state = State.TRYING
        actions: list[Action] = [Send(self.request)]
        if not self.reliable:
            actions.append(StartTimer("E", self._interval))
        actions.append(StartTimer("F", 64 * self.timers.t1))
        return actions

    def on_response(self, resp: SIPResponse) -> list[Action]:
        if self.state not in (State.TRYING, State.PROCEEDING):
            return []  # Completed: retransmitted responses are absorbed
        if resp.status < 200:
            self.state = State.PROCEEDING
            return [Deliver(resp)]
        actions: list[Action] = [CancelTimer("E"), CancelTimer("F")]
        if self.reliable:
            self.state = State.TERMINATED
            return actions + [Deliver(resp), Terminated("normal")]
        self.state = State.COMPLETED
        return actions + [StartTimer("K", self.timers.t4), Deliver(resp)]

    def on_timer(self, name: str) -> list[Action]:
        state = self.state
        if name == "E" and state in (State.TRYING, State.PROCEEDING):
            if state is State.TRYING:
                self._interval = min(2 * self._interval, self.timers.t2)
            else:
                self._interval = self.timers.t2  # s.17.1.2.2: T2 once a provisional came
            return [Send(self.request), StartTimer("E", self._interval)]
        if name == "F" and state in (State.TRYING, State.PROCEEDING):
            return [CancelTimer("E")] + self._terminate("timeout")
        if name == "K" and state is State.COMPLETED:
            return self._terminate("normal")
        return []


# -- server transactions ---------------------------------------------------------------------


class ServerTransactionCore(_Machine):
    """Common part of the two server machines (s.17.2)."""

    __slots__ = ("request", "reliable", "timers", "last_response", "_interval")

    def __init__(self, request: SIPRequest, *, reliable: bool,
                 timers: TimerSettings = DEFAULT_TIMERS) -> None:
        self.request = request
        self.reliable = reliable
        self.timers = timers
        self.state = State.TRYING
        self.last_response: SIPResponse | None = None
        self._interval = timers.t1

    @property
    def key(self) -> tuple[object, ...]:
        return server_key(self.request)

    @property
    def final_sent(self) -> bool:
        return self.last_response is not None and self.last_response.status >= 200


class InviteServerTransaction(ServerTransactionCore):
    """s.17.2.1 (with RFC 6026 Accepted): Proceeding -> Completed -> Confirmed -> Terminated."""

    __slots__ = ()

    def start(self) -> list[Action]:
        self.state = State.PROCEEDING
        trying = make_response(self.request, 100, "Trying")
        self.last_response = trying
        return [Send(trying), Deliver(self.request)]

    def on_request(self, req: SIPRequest) -> list[Action]:
        """A retransmitted INVITE or an ACK matched to this transaction."""
        state = self.state
        if req.method == "ACK":
            if state is State.COMPLETED:
                actions: list[Action] = [CancelTimer("G"), CancelTimer("H")]
                if self.reliable:
                    return actions + self._terminate("normal")
                self.state = State.CONFIRMED
                return actions + [StartTimer("I", self.timers.t4)]
            if state is State.ACCEPTED:
                return [Deliver(req)]  # RFC 6026 s.8.7: an ACK for the 2xx goes to the TU
            return []
        if state in (State.PROCEEDING, State.COMPLETED) and self.last_response is not None:
            return [Send(self.last_response)]
        return []  # Accepted, Confirmed: absorbed

    def on_response(self, resp: SIPResponse) -> list[Action]:
        """The TU's response to send."""
        if self.state is not State.PROCEEDING:
            return []
        self.last_response = resp
        if resp.status < 200:
            return [Send(resp)]
        if resp.status < 300:
            self.state = State.ACCEPTED
            return [Send(resp), StartTimer("L", 64 * self.timers.t1)]
        self.state = State.COMPLETED
        actions: list[Action] = [Send(resp)]
        if not self.reliable:
            actions.append(StartTimer("G", self._interval))
        actions.append(StartTimer("H", 64 * self.timers.t1))
        return actions

    def on_timer(self, name: str) -> list[Action]:
        state = self.state
        if name == "G" and state is State.COMPLETED and self.last_response is not None:
            self._interval = min(2 * self._interval, self.timers.t2)
            return [Send(self.last_response), StartTimer("G", self._interval)]
        if name == "H" and state is State.COMPLETED:
            return [CancelTimer("G")] + self._terminate("timeout")
        if name == "I" and state is State.CONFIRMED:
            return self._terminate("normal")
        if name == "L" and state is State.ACCEPTED:
            return self._terminate("normal")
        return []


class NonInviteServerTransaction(ServerTransactionCore):
    """s.17.2.2: Trying -> Proceeding -> Completed -> Terminated."""

    __slots__ = ()

    def start(self) -> list[Action]:
        self.state = State.TRYING
        return [Deliver(self.request)]

    def on_request(self, req: SIPRequest) -> list[Action]:
        """A retransmission: resend the last response, if any (Trying discards it)."""
        if self.state in (State.PROCEEDING, State.COMPLETED) and self.last_response is not None:
            return [Send(self.last_response)]
        return []

    def on_response(self, resp: SIPResponse) -> list[Action]:
        """The TU's response to send."""
        if self.state not in (State.TRYING, State.PROCEEDING):
            return []
        self.last_response = resp
        if resp.status < 200:
            self.state = State.PROCEEDING
            return [Send(resp)]
        if self.reliable:
            self.state = State.TERMINATED
            return [Send(resp), Terminated("normal")]
        self.state = State.COMPLETED
        return [Send(resp), StartTimer("J", 64 * self.timers.t1)]

    def on_timer(self, name: str) -> list[Action]:
        if name == "J" and self.state is State.COMPLETED:
            return self._terminate("normal")
        return []
