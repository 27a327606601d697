"""Fakes of the seams between layers, for tests (shipped next to the code, as treq does).

Each fake keeps the contract of docs/internals.md (same calls, same Deferreds, same error
types, timers on the injected clock) and lets a test play the peer by hand.
"""

from __future__ import annotations

# ---- SIP INVITE dialogs and MSRP sessions, as the UA sees them (engineer E) -------------
import secrets as _secrets
from typing import Any as _Any

from twisted.internet import defer as _defer


class FakeDialog:
    """A `sip.dialog.Dialog` as the UA uses it; `peer_bye()` plays a BYE from the peer."""

    def __init__(self, stack: FakeInviteStack, role: str, call_id: str, response: _Any = None) -> None:
        self.stack = stack
        self.role = role
        self.call_id = call_id
        self.response = response  # UAC: the 2xx that made the dialog
        self.remote_sdp: bytes = response.body if response is not None else b""
        self.ack_body: bytes = b""
        self.ack_content_type: str | None = None
        self.terminated = False
        self.confirmed: _defer.Deferred[FakeDialog] = _defer.Deferred()
        self.on_bye: _Any = None
        self.on_request: _Any = None
        self.byes_sent = 0
        self._ack_timer: _Any = None

    def bye(self) -> _defer.Deferred[_Any]:
        if self.terminated:
            return _defer.succeed(None)
        self.byes_sent += 1
        self._end()
        return _defer.succeed(200)

    def peer_bye(self) -> None:
        self._end()
        if not self.confirmed.called:
            self.confirmed.callback(self)
        if self.on_bye is not None:
            self.on_bye()

    def ack(self, body: bytes = b"", content_type: str | None = None) -> None:
        """The peer's ACK; a body is kept as `Dialog` keeps it (late offer: the answer)."""
        if not self.confirmed.called:
            self.ack_body, self.ack_content_type = body, content_type
            if body and (content_type or "").split(";")[0].strip().lower() == "application/sdp":
                self.remote_sdp = body
        if self._ack_timer is not None and self._ack_timer.active():
            self._ack_timer.cancel()
        if not self.confirmed.called:
            self.confirmed.callback(self)

    def _no_ack(self) -> None:
        from .sip.transaction import SIPTimeout

        self._ack_timer = None
        if not self.confirmed.called:
            self.confirmed.errback(SIPTimeout("no ACK for 2xx"))
        if not self.terminated:  # s.13.3.1.4: the dialog layer itself sends the BYE
            self.byes_sent += 1
            self._end()

    def _end(self) -> None:
        self.terminated = True
        if self._ack_timer is not None and self._ack_timer.active():
            self._ack_timer.cancel()
        self._ack_timer = None


class FakeInviteClient:
    """`stack.invite()`'s result; the test answers with `accept`, `reject` or lets Timer B run."""

    def __init__(self, stack: FakeInviteStack, request: _Any) -> None:
        from .sip.transaction import TIMER_B

        self.stack = stack
        self.request = request
        self.deferred: _defer.Deferred[FakeDialog] = _defer.Deferred()
        self.cancelled = False
        self._timer_b = stack.clock.callLater(TIMER_B, self._timeout)

    @property
    def pending(self) -> bool:
        return not self.deferred.called

    def accept(self, body: bytes, content_type: str = "application/sdp") -> FakeDialog:
        from .sip.message import Headers, SIPResponse

        h = Headers([("Call-ID", self.request.call_id or ""), ("Content-Type", content_type)])
        dialog = FakeDialog(self.stack, "uac", self.request.call_id or "", SIPResponse(200, "OK", h, body))
        dialog.acked = True  # the stack ACKs a 2xx itself
        self.stack.dialogs.append(dialog)
        self._stop()
        self.deferred.callback(dialog)
        return dialog

    def reject(self, code: int, reason: str) -> None:
        from .sip.transaction import SIPFinalResponse

        self._stop()
        self.deferred.errback(SIPFinalResponse(code, reason))

    def cancel(self) -> None:
        """CANCEL: the peer answers 487 to the INVITE (as a real UAS does)."""
        self.cancelled = True
        if self.pending:
            self.reject(487, "Request Terminated")

    def _timeout(self) -> None:
        from .sip.transaction import SIPTimeout

        self._timer_b = None
        self.deferred.errback(SIPTimeout("Timer B"))

    def _stop(self) -> None:
        if self._timer_b is not None and self._timer_b.active():
            self._timer_b.cancel()
        self._timer_b = None


class FakeServerTransaction:
    """An incoming request's server transaction; `responses` records what was answered."""

    def __init__(self, request: _Any, source: _Any = None) -> None:
        self.request = request
        self.source = source
        self.responses: list[tuple[int, str | None, dict[str, _Any]]] = []
        self.on_cancel: _Any = None

    @property
    def responded(self) -> bool:
        return any(code >= 200 for code, _, _ in self.responses)

    def respond(self, status: int, reason: str | None = None, **kw: _Any) -> None:
        self.responses.append((status, reason, kw))


class FakeInviteStack:
    """The part of `SIPStack` the UA uses: `new_request`, `invite`, `accept`."""

    def __init__(self, clock: _Any) -> None:
        self.clock = clock
        self.invites: list[FakeInviteClient] = []
        self.dialogs: list[FakeDialog] = []

    def new_request(self, method: str, from_uri: str, to_uri: str, ruri: str, *, body: bytes = b"",
                    content_type: str | None = None, headers: _Any = ()) -> _Any:
        from .sip.message import Headers, SIPRequest

        h = Headers([
            ("Via", f"SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK{_secrets.token_hex(6)}"),
            ("Max-Forwards", "70"),
            ("From", f"<{from_uri}>;tag={_secrets.token_hex(4)}"),
            ("To", f"<{to_uri}>"),
            ("Call-ID", _secrets.token_hex(8)),
            ("CSeq", f"1 {method}"),
            ("Contact", "<sip:gw@127.0.0.1:5060>"),
        ])
        for name, value in headers:
            h.add(name, value)
        if content_type is not None:
            h.set("Content-Type", content_type)
        return SIPRequest(method, ruri, h, body)

    def invite(self, req: _Any) -> FakeInviteClient:
        ic = FakeInviteClient(self, req)
        self.invites.append(ic)
        return ic

    def accept(self, txn: FakeServerTransaction, *, body: bytes, content_type: str,
               headers: _Any = ()) -> FakeDialog:
        from .sip.transaction import TIMER_H

        txn.respond(200, "OK", body=body, content_type=content_type, headers=headers)
        dialog = FakeDialog(self, "uas", txn.request.call_id or "")
        dialog.local_sdp = body
        dialog._ack_timer = self.clock.callLater(TIMER_H, dialog._no_ack)
        self.dialogs.append(dialog)
        return dialog

    def open_transactions(self) -> list[FakeInviteClient]:
        return [ic for ic in self.invites if ic.pending]

    def open_dialogs(self) -> list[FakeDialog]:
        return [d for d in self.dialogs if not d.terminated]


class FakeMSRPSession:
    """An `msrp.session.MSRPSession` as the UA uses it; the test plays the peer."""

    def __init__(self, stack: FakeMSRPStack, accept_types: list[str]) -> None:
        self.stack = stack
        self.session_id = _secrets.token_hex(10)
        scheme, _, rest = stack.my_uri.partition("://")
        authority, _, params = rest.partition(";")
        self.local_path = [f"{scheme}://{authority}/{self.session_id};{params or 'tcp'}"]
        self.accept_types = list(accept_types)
        self.remote_path: list[str] = []
        self.bound = False
        self.closed = False
        self.connecting: _defer.Deferred[None] | None = None  # set by connect()
        self.waiting: _defer.Deferred[None] | None = None  # set by wait_bound()
        self.sent: list[tuple[str | None, bytes, str, str, _defer.Deferred[int]]] = []
        self.on_message: _Any = None
        self.on_report: _Any = None
        self.on_closed: _Any = None
        self._wait_call: _Any = None

    def set_remote_path(self, path: list[str]) -> None:
        from .msrp.uri import parse_msrp_uri

        for uri in path:
            parse_msrp_uri(uri)
        self.remote_path = list(path)

    def connect(self) -> _defer.Deferred[None]:
        self.connecting = _defer.Deferred()
        return self.connecting

    def wait_bound(self, timeout: float) -> _defer.Deferred[None]:
        from .msrp.session import MSRPSendError

        self.waiting = d = _defer.Deferred()

        def expire() -> None:
            self._wait_call = None
            if not d.called:
                d.errback(MSRPSendError(408, "peer did not connect in time"))

        self._wait_call = self.stack.clock.callLater(timeout, expire)
        return d

    # -- the peer's side --------------------------------------------------------------
    def binding_done(self) -> None:
        """The binding SEND got its 200 (active) or the peer's first SEND arrived (passive)."""
        self.bound = True
        self._stop_wait()
        for d in (self.connecting, self.waiting):
            if d is not None and not d.called:
                d.callback(None)

    def binding_failed(self, code: int = 503, comment: str = "cannot connect") -> None:
        from .msrp.session import MSRPSendError

        if self.connecting is not None and not self.connecting.called:
            self.connecting.errback(MSRPSendError(code, comment))

    def lose_connection(self, reason: str = "connection reset") -> None:
        self.closed = True
        self.bound = False
        self._stop_wait()
        if self.on_closed is not None:
            self.on_closed(reason)

    def send(self, content_type: str | None, body: bytes, *, failure_report: str = "yes",
             success_report: str = "no") -> _defer.Deferred[int]:
        from .msrp.session import MSRPSendError

        if self.closed or not self.bound:
            return _defer.fail(MSRPSendError(503, "session is not connected"))
        d: _defer.Deferred[int] = _defer.Deferred()
        self.sent.append((content_type, body, failure_report, success_report, d))
        return d

    def close(self) -> None:
        from .msrp.session import MSRPSendError

        if self.closed:
            return
        self.closed = True
        self._stop_wait()
        if self.waiting is not None and not self.waiting.called:
            self.waiting.errback(MSRPSendError(503, "session closed"))

    def _stop_wait(self) -> None:
        if self._wait_call is not None and self._wait_call.active():
            self._wait_call.cancel()
        self._wait_call = None


class FakeMSRPStack:
    """`MSRPStack.create_session` and a record of the sessions made."""

    def __init__(self, clock: _Any, my_uri: str = "msrp://127.0.0.1:2855;tcp") -> None:
        self.clock = clock
        self.my_uri = my_uri
        self.sessions: list[FakeMSRPSession] = []

    def create_session(self, accept_types: list[str]) -> FakeMSRPSession:
        s = FakeMSRPSession(self, accept_types)
        self.sessions.append(s)
        return s

    def open_sessions(self) -> list[FakeMSRPSession]:
        return [s for s in self.sessions if not s.closed]


# ---- the gateway's seams: the UA, the SIP sender, MSRP messages (engineer H) ---------------
import itertools as _itertools
from dataclasses import dataclass as _dataclass, field as _field


@_dataclass(slots=True)
class FakePeer:
    """As sip.transport.Peer."""

    transport: str = "udp"
    host: str = "127.0.0.1"
    port: int = 5060


@_dataclass(slots=True)
class FakeSIPResponse:
    """What the gateway reads of a final SIP response."""

    status: int
    reason: str


@_dataclass(slots=True)
class FakeUASession:
    session_id: str
    role: str  # "uac" | "uas"
    content_types: _Any
    handler: _Any
    from_uri: str = ""
    to_uri: str = ""
    ruri: str = ""
    txn: _Any = None
    ended: bool = False


class FakeUAError(Exception):
    """As ua.UAError: the offer is refused; the caller answers with code/reason."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code} {reason}")
        self.code = code
        self.reason = reason


class FakeSendError(Exception):
    """As msrp.session.MSRPSendError."""

    def __init__(self, code: int, comment: str | None = None) -> None:
        super().__init__(f"{code} {comment}")
        self.code = code
        self.comment = comment


class FakeUA:
    """The MSRP user agent as the gateway uses it (`start/answer/send/end/sessions`); the
    test plays the far side with `establish`, `fail`, `terminate`, `deliver`.

    `refuse_answer = (488, "Not Acceptable Here")` makes the next answer() raise as UAError
    does; every send() returns a Deferred kept in `sent` for the test to fire.
    """

    def __init__(self) -> None:
        self._ids = _itertools.count(1)
        self.by_id: dict[str, FakeUASession] = {}
        self.sent: list[tuple[str, str, bytes, _defer.Deferred[int]]] = []
        self.ended: list[str] = []
        self.refuse_answer: tuple[int, str] | Exception | None = None
        self.refuse_start: Exception | None = None

    def _new(self, role: str, content_types: _Any, handler: _Any, **kw: _Any) -> str:
        sid = f"fake{next(self._ids)}"
        self.by_id[sid] = FakeUASession(sid, role, content_types, handler, **kw)
        return sid

    def start(self, content_types: _Any, from_uri: str, to_uri: str, ruri: str,
              handler: _Any) -> str:
        if self.refuse_start is not None:
            raise self.refuse_start
        return self._new("uac", content_types, handler, from_uri=from_uri, to_uri=to_uri,
                         ruri=ruri)

    def answer(self, txn: _Any, content_types: _Any, handler: _Any) -> str:
        if self.refuse_answer is not None:
            refusal, self.refuse_answer = self.refuse_answer, None
            if isinstance(refusal, Exception):
                raise refusal
            raise FakeUAError(*refusal)
        sid = self._new("uas", content_types, handler, txn=txn)
        txn.respond(200, "OK")
        return sid

    def send(self, session_id: str, content_type: str, body: bytes, *,
             failure_report: str = "yes", success_report: str = "no") -> _defer.Deferred[int]:
        s = self.by_id.get(session_id)
        if s is None or s.ended:
            return _defer.fail(FakeSendError(481, "Session Does Not Exist"))
        d: _defer.Deferred[int] = _defer.Deferred()
        self.sent.append((session_id, content_type, body, d))
        return d

    def end(self, session_id: str) -> bool:
        s = self.by_id.get(session_id)
        if s is None or s.ended:
            return False
        s.ended = True
        self.ended.append(session_id)
        return True

    def sessions(self) -> list[FakeUASession]:
        return [s for s in self.by_id.values() if not s.ended]

    # -- the far side --
    def establish(self, session_id: str) -> None:
        self.by_id[session_id].handler.established(session_id)

    def fail(self, session_id: str, code: int | None, reason: str | None) -> None:
        s = self.by_id[session_id]
        s.ended = True
        s.handler.failed(session_id, code, reason)

    def terminate(self, session_id: str, why: str = "BYE") -> None:
        s = self.by_id[session_id]
        s.ended = True
        s.handler.terminated(session_id, why)

    def deliver(self, session_id: str, msg: _Any) -> None:
        self.by_id[session_id].handler.message_received(session_id, msg)

    def last(self) -> FakeUASession:
        return list(self.by_id.values())[-1]


@_dataclass(slots=True)
class FakeIncomingMessage:
    """As msrp.session.IncomingMessage; failure REPORTs land in `reports`."""

    content_type: str | None
    body: bytes
    failure_report: str = "yes"
    success_report: str = "no"
    message_id: str = "m1"
    reports: list[tuple[int, str | None]] = _field(default_factory=list)

    def report_failure(self, code: int, comment: str | None = None) -> None:
        self.reports.append((code, comment))


@_dataclass(slots=True)
class FakeOutgoingRequest:
    method: str
    from_uri: str
    to_uri: str
    ruri: str
    body: bytes
    content_type: str | None
    headers: _Any = ()


class SIPTimeout(Exception):
    """As sip.transaction.SIPTimeout (Timer F)."""

    code = 408


class FakeSIPSender:
    """The SIP stack as the gateway uses it for requests it originates (`new_request`,
    `send_request`); each sent request waits in `sent` with its Deferred, and
    `answer(i, status)` / `time_out(i)` play the far side."""

    def __init__(self) -> None:
        self.sent: list[tuple[FakeOutgoingRequest, _defer.Deferred[_Any]]] = []

    def new_request(self, method: str, from_uri: str, to_uri: str, ruri: str, *,
                    body: bytes = b"", content_type: str | None = None,
                    headers: _Any = ()) -> FakeOutgoingRequest:
        return FakeOutgoingRequest(method, from_uri, to_uri, ruri, body, content_type, headers)

    def send_request(self, req: FakeOutgoingRequest) -> _defer.Deferred[_Any]:
        d: _defer.Deferred[_Any] = _defer.Deferred()
        self.sent.append((req, d))
        return d

    def answer(self, index: int, status: int, reason: str = "") -> None:
        self.sent[index][1].callback(FakeSIPResponse(status, reason or str(status)))

    def time_out(self, index: int) -> None:
        self.sent[index][1].errback(SIPTimeout("Timer F"))


# ---- the SIP transport, as the SIP stack sees it (engineer B) ------------------------------


class FakeSIPTransport:
    """`sip.transport.SIPTransport` in memory: what the stack sends lands in `sent` (re-parsed
    from its bytes, as (message, peer)); `deliver(bytes_or_message, peer)` plays a peer.

    `resolve` follows s.18.1.1 (``transport=`` param, TCP over 1300 bytes, port 5060/5061);
    `fail_sends = True` makes every send errback, as a refused TCP connection does.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 5060) -> None:
        self.host = host
        self.port = port
        self.sent: list[tuple[_Any, _Any]] = []
        self.on_message: _Any = None
        self.fail_sends = False

    def send(self, msg: _Any, peer: _Any) -> _defer.Deferred[None]:
        from .sip.message import parse_message

        if self.fail_sends:
            return _defer.fail(ConnectionRefusedError(f"{peer.host}:{peer.port}"))
        self.sent.append((parse_message(msg.to_bytes()), peer))
        return _defer.succeed(None)

    def local_via(self, peer: _Any) -> tuple[str, str, int]:
        return peer.transport.upper(), self.host, self.port

    def response_peer(self, request: _Any, source: _Any) -> _Any:
        return source

    def resolve(self, uri_text: str, size: int) -> _defer.Deferred[_Any]:
        from .sip.uri import parse_uri

        uri = parse_uri(uri_text)
        transport = uri.transport or ("tls" if uri.scheme == "sips" else
                                      "tcp" if size > 1300 else "udp")
        port = uri.port or (5061 if transport == "tls" else 5060)
        return _defer.succeed(FakePeer(transport, uri.host, port))

    def deliver(self, data: _Any, peer: _Any) -> None:
        from .sip.message import parse_message

        msg = parse_message(data) if isinstance(data, bytes) else data
        self.on_message(msg, peer)

    def take(self) -> list[_Any]:
        """The messages sent since the last call (peers dropped)."""
        out = [m for m, _ in self.sent]
        self.sent.clear()
        return out


# ---- end-to-end delivery: an MSRP layer that leaves success REPORTs to its owner (T11) ----


@_dataclass(slots=True)
class FakeOwnerReportedMessage(FakeIncomingMessage):
    """An IncomingMessage whose MSRP layer held back the hop-by-hop success REPORT, as
    `[msrp_gateway] delivery = "end_to_end"` needs: `report_success()` sends it (counted
    in `successes`) if the sender asked with Success-Report: yes."""

    successes: int = 0

    def report_success(self) -> bool:
        if self.success_report != "yes":
            return False
        self.successes += 1
        return True


# ---- a sans-IO MSRP session host (tests of msrp/session.py and bench/msrp_send_path.py) ----


from twisted.internet import task as _task  # noqa: E402

from .msrp.session import SessionHost as _SessionHost  # noqa: E402


class ClockedSessionHost(_SessionHost):
    """A `msrp.session.SessionHost` on a `task.Clock`: a session table and one link (`link`,
    set by the caller) for every next hop. No sockets."""

    def __init__(self, settings: _Any = None) -> None:
        from .msrp.session import SessionSettings, SessionTable

        self.clock = _task.Clock()
        self.settings = settings or SessionSettings()
        self.table = SessionTable(self.settings)
        self.link: _Any = None

    def link_for(self, uri: str) -> _defer.Deferred[_Any]:
        assert self.link is not None
        return _defer.succeed(self.link)

    def forget(self, session: _Any) -> None:
        self.table.remove(session)
