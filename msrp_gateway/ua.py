"""The MSRP user agent (OpenSIPS msrp_ua): SIP INVITE sessions that carry MSRP.

One `MSRPUserAgent` joins the SIP stack (INVITE dialogs) and the MSRP stack (sessions) with
SDP offer/answer in between. As offerer (`start`) it sends the INVITE, checks the answer,
connects or waits per ``a=setup`` and binds; as answerer (`answer`) it replies 200 with the
answer and waits for the ACK and the binding. The handler hears exactly one `failed` or
`terminated` per session, on every path, after which nothing of the session is left: no
timer, no transaction waiting on us, no dialog, no MSRP session.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from . import sdp
from .msrp.message import MSRPParseError
from .msrp.session import Clock, IncomingMessage, MSRPSendError, SessionError, Timer
from .sip.transaction import SIPFinalResponse, SIPTransportError
from .sip.uri import parse_name_addr
from .ua_transports import local_uris, session_on

__all__ = [
    "MSRPUserAgent",
    "UAError",
    "UASettings",
    "UASessionInfo",
    "SessionState",
    "UAHandler",
]

log = Logger()

# RFC 4975 s.7.1.1 gives 30 s for a SEND's response; the binding wait uses the same bound.
SETUP_TIMEOUT = 30.0
SDP_TYPE = "application/sdp"
# A session's own local error codes towards send() callers (never on the wire).
NO_SESSION = 481
QUEUE_FULL = 503
# The m= protos we can answer on, in the order we prefer them for our own offers.
_PROTOS = (sdp.PROTO_TCP, sdp.PROTO_TLS)


class UAError(Exception):
    """A session cannot be started or answered; ``code``/``reason`` is the SIP reply to use.

    ``headers`` are what that reply should carry (Warning for a 488, Accept for a 415).
    """

    def __init__(self, code: int, reason: str, headers: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason
        self.headers = tuple(headers)

    def __str__(self) -> str:
        return f"{self.code} {self.reason}"


@dataclass(slots=True)
class UASettings:
    """What the UA needs from ``[msrp_ua]``; any object with these attributes will do."""

    max_duration: float = 43200.0  # s; 0 = no limit (OpenSIPS msrp_ua max_duration)
    setup_timeout: float = SETUP_TIMEOUT  # ACK + MSRP binding must be done within this
    actpass_answer: str = "passive"  # our a=setup when an offer says actpass
    offer_setup: str = "actpass"  # our a=setup in offers (RFC 6135)
    advertised_contact: str = ""  # Contact URI for our INVITEs, "" = the stack's own
    max_sessions: int = 100_000
    max_queued_messages: int = 256  # per session, while it is being set up


class UAHandler(Protocol):
    """What the UA tells its user (the gateway) about a session."""

    def established(self, session_id: str) -> None: ...
    def failed(self, session_id: str, code: int | None, reason: str | None) -> None: ...
    def terminated(self, session_id: str, why: str) -> None: ...
    def message_received(self, session_id: str, msg: IncomingMessage) -> None: ...
    def report_received(self, session_id: str, report: Any) -> None: ...


class MSRPSessionAPI(Protocol):
    """What the UA uses of an MSRP session (`msrp.session.MSRPSession`; tests pass fakes)."""

    session_id: str
    local_path: list[str]
    on_message: Callable[[IncomingMessage], None] | None
    on_report: Callable[[Any], None] | None
    on_closed: Callable[[str], None] | None

    def set_remote_path(self, path: Sequence[str]) -> None: ...
    def connect(self) -> defer.Deferred[None]: ...
    def wait_bound(self, timeout: float) -> defer.Deferred[None]: ...
    def send(self, content_type: str | None, body: bytes, *, failure_report: str = "yes",
             success_report: str = "no") -> defer.Deferred[int]: ...
    def close(self) -> None: ...


class SessionState(enum.Enum):
    INVITING = "inviting"  # UAC: INVITE sent, no 2xx yet
    SETUP = "setup"  # dialog up; waiting for ACK (UAS) and the MSRP binding
    ESTABLISHED = "established"
    ENDED = "ended"


@dataclass(slots=True)
class UASessionInfo:
    """One line of the MI listing."""

    session_id: str
    role: str  # "uac" (we offered) or "uas" (we answered)
    state: str
    from_uri: str
    to_uri: str
    ruri: str
    call_id: str | None
    local_path: list[str]
    remote_path: list[str]
    created: float
    established: float | None
    queued: int


@dataclass(slots=True, eq=False)
class _Session:
    sid: str
    role: str
    handler: Any
    msrp: MSRPSessionAPI
    content_types: list[str]
    from_uri: str
    to_uri: str
    ruri: str
    created: float
    state: SessionState = SessionState.INVITING
    invite: Any = None  # InviteClient while the INVITE is pending
    dialog: Any = None
    acked: bool = False
    bound: bool = False
    remote_path: list[str] = field(default_factory=list)
    established_at: float | None = None
    setup_call: Timer | None = None
    duration_call: Timer | None = None
    queue: deque[tuple[str | None, bytes, str, str, defer.Deferred[int]]] = field(default_factory=deque)
    starting: bool = True  # inside start()/answer(): notifications are deferred
    offer: bytes = b""  # the SDP we offered (UAC, or UAS answering a late offer)
    late_offer: bool = False  # UAS: the INVITE had no SDP; the answer comes in the ACK
    ack_body: tuple[bytes, str | None] = (b"", None)  # late offer: the confirming ACK's body
    peer_max_size: int | None = None  # the peer's a=max-size (RFC 4975 s.8.6)


def _split_types(content_types: str | Sequence[str]) -> list[str]:
    if isinstance(content_types, str):
        types = content_types.replace(",", " ").split()
    else:
        types = [t.strip() for t in content_types if t.strip()]
    if not types:
        raise UAError(500, "Server Internal Error", [("Warning", '399 msrpgw "no content types configured"')])
    return types


class MSRPUserAgent:
    """Starts, answers, runs and ends MSRP sessions set up over SIP INVITE."""

    def __init__(self, reactor: IReactorTime, sip_stack: Any, msrp_stack: Any, settings: Any = None) -> None:
        self._clock: Clock = reactor
        self._sip = sip_stack
        self._msrp = msrp_stack
        s = settings if settings is not None else UASettings()
        self._max_duration = float(getattr(s, "max_duration", 43200.0))
        self._setup_timeout = float(getattr(s, "setup_timeout", SETUP_TIMEOUT))
        self._actpass_active = getattr(s, "actpass_answer", "passive") == "active"
        self._offer_setup = getattr(s, "offer_setup", "actpass")
        self._contact = getattr(s, "advertised_contact", "") or ""
        self._max_sessions = int(getattr(s, "max_sessions", 100_000))
        self._max_queued = int(getattr(s, "max_queued_messages", 256))
        self._sessions: dict[str, _Session] = {}
        self._byes: set[defer.Deferred[Any]] = set()

    # ------------------------------------------------------------------ public API

    def start(self, content_types: str | Sequence[str], from_uri: str, to_uri: str, ruri: str, handler: Any) -> str:
        """Offer a session (INVITE out); returns its session id. Raises `UAError` if it cannot."""
        types = _split_types(content_types)
        self._check_room()
        msess = self._create_msrp(types)
        try:
            offer = sdp.build_offer(list(msess.local_path), types, setup=self._offer_setup)
            req = self._sip.new_request(
                "INVITE", from_uri, to_uri, ruri, body=offer, content_type=SDP_TYPE
            )
            if self._contact:
                req.headers.set("Contact", f"<{self._contact}>")
        except Exception as e:
            msess.close()
            log.failure("cannot build the INVITE for {ruri}", ruri=ruri)
            raise UAError(500, "Server Internal Error") from e
        s = _Session(msess.session_id, "uac", handler, msess, types, from_uri, to_uri, ruri, self._clock.seconds())
        s.offer = offer
        self._register(s)
        try:
            s.invite = self._sip.invite(req)
        except Exception as e:
            s.starting = False
            self._finish(s, why=f"INVITE not sent: {e}", code=503, reason="Service Unavailable", quiet=True)
            raise UAError(503, "Service Unavailable") from e
        s.invite.deferred.addCallbacks(self._uac_answered, self._uac_refused, callbackArgs=(s,), errbackArgs=(s,))
        s.starting = False
        return s.sid

    def answer(self, txn: Any, content_types: str | Sequence[str], handler: Any) -> str:
        """Answer an INVITE (200 with our SDP); returns the session id.

        The answer uses the transport the offer asks for (``TCP/MSRP`` or
        ``TCP/TLS/MSRP``), on our listener of that kind. An INVITE without a body is a
        late offer (RFC 3264 s.4): the 200 carries our offer and the ACK must carry the
        answer, else the dialog ends with BYE. Raises `UAError` without replying when the
        offer is unusable: the caller sends ``code``/``reason`` with ``headers`` (488 +
        Warning, 415 + Accept, 503).
        """
        types = _split_types(content_types)
        self._check_room()
        req = txn.request
        if not req.body:
            return self._answer_late_offer(txn, types, handler)
        ctype = (req.content_type or "").split(";", 1)[0].strip().lower()
        if ctype and ctype != SDP_TYPE:
            raise UAError(415, "Unsupported Media Type", [("Accept", SDP_TYPE)])
        uris = local_uris(self._msrp)
        try:
            offer = sdp.parse_sdp(req.body)
            wanted = sdp.find_msrp_media(offer, tuple(p for p in _PROTOS if p in uris))
        except sdp.SDPError as e:
            raise UAError(e.code, "Not Acceptable Here", [("Warning", e.warning())]) from None
        msess = self._create_msrp(types, uris[wanted.proto])
        try:
            neg = sdp.build_answer(offer, list(msess.local_path), types, prefer_active=self._actpass_active)
            msess.set_remote_path(neg.peer.path)
        except sdp.SDPError as e:
            msess.close()
            raise UAError(e.code, "Not Acceptable Here", [("Warning", e.warning())]) from None
        except MSRPParseError as e:
            msess.close()
            err = sdp.SDPError(f"bad a=path: {e}")
            raise UAError(488, "Not Acceptable Here", [("Warning", err.warning())]) from None
        s = self._uas_session(req, msess, handler, neg.accept_types)
        s.remote_path = list(neg.peer.path)
        s.peer_max_size = neg.peer.max_size
        self._accept(txn, s, neg.body)
        self._bind(s, neg.active)
        s.starting = False
        return s.sid

    def _answer_late_offer(self, txn: Any, types: list[str], handler: Any) -> str:
        """An INVITE without SDP: offer in our 200, read the answer from the ACK."""
        msess = self._create_msrp(types)  # our offer is on my_uri's transport
        try:
            offer = sdp.build_offer(list(msess.local_path), types, setup=self._offer_setup)
        except Exception as e:
            msess.close()
            log.failure("cannot build the offer for a late-offer INVITE")
            raise UAError(500, "Server Internal Error") from e
        s = self._uas_session(txn.request, msess, handler, types)
        s.offer = offer
        s.late_offer = True
        self._accept(txn, s, offer)
        _capture_ack_body(s)
        # the ACK and the MSRP binding must both be done within setup_timeout
        s.setup_call = self._clock.callLater(self._setup_timeout, self._setup_expired, s)
        s.starting = False
        return s.sid

    def _uas_session(self, req: Any, msess: MSRPSessionAPI, handler: Any, types: list[str]) -> _Session:
        s = _Session(
            msess.session_id, "uas", handler, msess, list(types),
            _uri_of(req.headers.get("From")), _uri_of(req.headers.get("To")), str(req.uri),
            self._clock.seconds(),
        )
        self._register(s)
        return s

    def _accept(self, txn: Any, s: _Session, body: bytes) -> None:
        """Send our 200 with `body` and follow the dialog it makes (ACK, BYE)."""
        try:
            contact = [("Contact", f"<{self._contact}>")] if self._contact else []
            dialog = self._sip.accept(txn, body=body, content_type=SDP_TYPE, headers=contact)
        except Exception as e:
            s.starting = False
            self._finish(s, why=f"200 not sent: {e}", quiet=True)
            raise UAError(500, "Server Internal Error") from e
        s.dialog = dialog
        s.state = SessionState.SETUP
        dialog.on_bye = lambda: self._finish(s, why="BYE from peer")
        dialog.confirmed.addCallbacks(self._uas_acked, self._uas_no_ack, callbackArgs=(s,), errbackArgs=(s,))

    def send(
        self,
        session_id: str,
        content_type: str | None,
        body: bytes,
        *,
        failure_report: str = "yes",
        success_report: str = "no",
    ) -> defer.Deferred[int]:
        """Send one message; fires with the final MSRP status, errbacks `MSRPSendError`.

        Before the session is bound the message waits (bounded) and goes out on binding.
        Refusals known at once (unknown session 481, a=max-size 413, a full queue 503:
        the set-up queue or the connection's `max_queued_messages`) come back as a
        Deferred that has already failed when returned, never as an exception, so the
        caller can still answer its MESSAGE 503 instead of 202.
        """
        s = self._sessions.get(session_id)
        if s is None:
            return defer.fail(MSRPSendError(NO_SESSION, "no such MSRP session"))
        if s.peer_max_size is not None and len(body) > s.peer_max_size:
            return defer.fail(
                MSRPSendError(413, f"the peer takes messages of at most {s.peer_max_size} bytes (a=max-size)")
            )
        if s.bound:
            sent: defer.Deferred[int] = s.msrp.send(
                content_type, body, failure_report=failure_report, success_report=success_report
            )
            return sent
        if len(s.queue) >= self._max_queued:
            return defer.fail(
                MSRPSendError(QUEUE_FULL, f"{self._max_queued} messages already wait for the session set-up")
            )
        d: defer.Deferred[int] = defer.Deferred()
        s.queue.append((content_type, body, failure_report, success_report, d))
        return d

    def end(self, session_id: str) -> bool:
        """End a session (BYE, or CANCEL while the INVITE is pending); False if unknown.

        The handler hears `terminated(session_id, "ended locally")` before this returns.
        """
        s = self._sessions.get(session_id)
        if s is None:
            return False
        self._finish(s, why="ended locally", local=True)
        return True

    def sessions(self) -> list[UASessionInfo]:
        """Every live session, for the MI."""
        out = []
        for s in self._sessions.values():
            call_id = getattr(s.dialog, "call_id", None) if s.dialog is not None else None
            out.append(
                UASessionInfo(
                    s.sid, s.role, s.state.value, s.from_uri, s.to_uri, s.ruri, call_id,
                    list(s.msrp.local_path), list(s.remote_path), s.created, s.established_at, len(s.queue),
                )
            )
        return out

    def __len__(self) -> int:
        return len(self._sessions)

    def stop(self, deadline: float | None = None) -> defer.Deferred[None]:
        """End every session; fires when the BYEs sent so far are answered or timed out.

        With `deadline` (seconds) it fires by then at the latest, whatever the peers do (a
        frozen peer, a UAS dialog still waiting for its ACK: up to 64*T1 each), and says
        in one log line how many BYEs were still unanswered. SIGTERM stays bounded.
        """
        for sid in list(self._sessions):
            self.end(sid)
        pending = list(self._byes)
        waited = defer.DeferredList(pending, consumeErrors=True).addCallback(lambda _: None)
        if deadline is None or not pending:
            return waited
        done: defer.Deferred[None] = defer.Deferred()

        def give_up() -> None:
            if not done.called:
                left = sum(1 for d in pending if not d.called)
                log.warn("UA stop: {n} of {total} BYE(s) unanswered after {t}s; not waiting "
                         "for them", n=left, total=len(pending), t=deadline)
                done.callback(None)

        call = self._clock.callLater(max(0.0, deadline), give_up)

        def finished(_: object) -> None:
            if call.active():
                call.cancel()
            if not done.called:
                done.callback(None)

        waited.addBoth(finished)
        return done

    # ------------------------------------------------------------------ set-up

    def _check_room(self) -> None:
        if len(self._sessions) >= self._max_sessions:
            raise UAError(
                503, "Service Unavailable",
                [("Warning", f'399 msrpgw "session limit ({self._max_sessions}) reached"')],
            )

    def _create_msrp(self, types: list[str], base: Any = None) -> MSRPSessionAPI:
        """A new MSRP session; on `base`'s transport when given (`ua_transports.local_uris`)."""
        try:
            if base is None:
                session: MSRPSessionAPI = self._msrp.create_session(types)
            else:
                session = session_on(self._msrp, types, base)
            return session
        except SessionError as e:  # the MSRP session table is full
            raise UAError(
                503, "Service Unavailable", [("Warning", f'399 msrpgw "MSRP: {e.comment or e.code}"')]
            ) from None

    def _register(self, s: _Session) -> None:
        self._sessions[s.sid] = s
        m = s.msrp
        m.on_message = lambda msg: self._call(s, "message_received", s.sid, msg)
        m.on_report = lambda rep: self._call(s, "report_received", s.sid, rep)
        m.on_closed = lambda reason: self._finish(s, why=f"MSRP connection lost: {reason}")
        if self._max_duration > 0:
            s.duration_call = self._clock.callLater(self._max_duration, self._expired, s)

    def _expired(self, s: _Session) -> None:
        s.duration_call = None
        self._finish(s, why=f"max_duration ({self._max_duration:g} s) reached", local=True)

    def _uac_answered(self, dialog: Any, s: _Session) -> None:
        s.invite = None
        s.dialog = dialog
        if s.state is SessionState.ENDED:
            self._bye(dialog)  # a 2xx crossed our CANCEL
            return
        dialog.on_bye = lambda: self._finish(s, why="BYE from peer")
        s.acked = True
        # a re-INVITE without our on_request gets 200 with the last local SDP: our offer
        dialog.local_sdp = s.offer
        dialog.local_content_type = SDP_TYPE
        try:
            peer, common, active = sdp.read_answer(
                _answer_body(dialog), s.content_types, sdp.proto_for_uri(s.msrp.local_path[-1])
            )
            s.msrp.set_remote_path(peer.path)
        except (sdp.SDPError, MSRPParseError) as e:
            log.warn("session {sid}: unusable answer from {ruri}: {why}", sid=s.sid, ruri=s.ruri, why=str(e))
            self._finish(s, why=f"unusable SDP answer: {e}")
            return
        s.remote_path = list(peer.path)
        s.peer_max_size = peer.max_size
        s.content_types = common
        s.state = SessionState.SETUP
        self._bind(s, active)

    def _uac_refused(self, f: Failure, s: _Session) -> None:
        s.invite = None
        if s.state is SessionState.ENDED:
            return None  # the 487 to our CANCEL, or a failure after we gave up
        exc = f.value
        code: int | None = None
        reason: str | None = None
        if isinstance(exc, SIPFinalResponse):
            code, reason = exc.code, exc.reason
        elif isinstance(exc, SIPTransportError):
            code, reason = exc.code, exc.reason  # s.8.1.3.1: a transport error counts as 503
        elif not isinstance(exc, Exception):
            return None
        self._finish(s, why=f"INVITE failed: {code or 'no final response'} {reason or ''}".rstrip(),
                     code=code, reason=reason)
        return None

    def _uas_acked(self, _: object, s: _Session) -> None:
        if s.state is SessionState.ENDED:
            return
        if s.dialog is not None and s.dialog.terminated:
            return  # a BYE before the ACK also confirms the dialog: on_bye ends the session
        s.acked = True
        if s.late_offer:
            self._late_answer(s)
            return
        self._maybe_established(s)

    def _late_answer(self, s: _Session) -> None:
        """The ACK to our late-offer 200: it must carry a usable answer (RFC 3264 s.4)."""
        body, ctype = s.ack_body
        try:
            if not body:
                raise sdp.SDPError("the ACK carries no SDP answer to our offer")
            if ctype and ctype.split(";", 1)[0].strip().lower() != SDP_TYPE:
                raise sdp.SDPError(f"the ACK's body is {ctype[:60]}, not {SDP_TYPE}")
            peer, common, active = sdp.read_answer(
                body, s.content_types, sdp.proto_for_uri(s.msrp.local_path[-1])
            )
            s.msrp.set_remote_path(peer.path)
        except (sdp.SDPError, MSRPParseError) as e:
            log.warn("session {sid}: unusable answer in the ACK from {uri}: {why}",
                     sid=s.sid, uri=s.from_uri, why=str(e))
            self._finish(s, why=f"unusable SDP answer in the ACK: {e}")
            return
        s.remote_path = list(peer.path)
        s.peer_max_size = peer.max_size
        s.content_types = common
        self._bind(s, active)

    def _uas_no_ack(self, f: Failure, s: _Session) -> None:
        if s.state is not SessionState.ENDED:
            self._finish(s, why="no ACK for our 200")

    def _bind(self, s: _Session, active: bool) -> None:
        """Connect and bind (active side) or wait for the peer's binding SEND (passive)."""
        if s.setup_call is None:
            s.setup_call = self._clock.callLater(self._setup_timeout, self._setup_expired, s)
        d = s.msrp.connect() if active else s.msrp.wait_bound(self._setup_timeout)
        d.addCallbacks(self._bound, self._bind_failed, callbackArgs=(s,), errbackArgs=(s,))

    def _bound(self, _: object, s: _Session) -> None:
        if s.state is SessionState.ENDED:
            return
        s.bound = True
        while s.queue:
            ct, body, fr, sr, d = s.queue.popleft()
            s.msrp.send(ct, body, failure_report=fr, success_report=sr).chainDeferred(d)
        self._maybe_established(s)

    def _bind_failed(self, f: Failure, s: _Session) -> None:
        if s.state is not SessionState.ENDED:
            self._finish(s, why=f"MSRP session not bound: {f.getErrorMessage()}")

    def _setup_expired(self, s: _Session) -> None:
        s.setup_call = None
        what = "MSRP binding" if s.acked else "ACK and MSRP binding"
        self._finish(s, why=f"{what} not done within {self._setup_timeout:g} s")

    def _maybe_established(self, s: _Session) -> None:
        if not (s.bound and s.acked) or s.state is not SessionState.SETUP:
            return
        if s.setup_call is not None and s.setup_call.active():
            s.setup_call.cancel()
        s.setup_call = None
        s.state = SessionState.ESTABLISHED
        s.established_at = self._clock.seconds()
        log.info("MSRP session {sid} established ({role}) with {path}", sid=s.sid, role=s.role, path=s.remote_path)
        self._call(s, "established", s.sid)

    # ------------------------------------------------------------------ ending

    def _finish(
        self,
        s: _Session,
        *,
        why: str,
        code: int | None = None,
        reason: str | None = None,
        local: bool = False,
        quiet: bool = False,
    ) -> None:
        """The one way out: release everything, then tell the handler once."""
        if s.state is SessionState.ENDED:
            return
        was_established = s.state is SessionState.ESTABLISHED
        s.state = SessionState.ENDED
        self._sessions.pop(s.sid, None)
        for name in ("setup_call", "duration_call"):
            call = getattr(s, name)
            if call is not None and call.active():
                call.cancel()
            setattr(s, name, None)
        m = s.msrp
        m.on_message = m.on_report = m.on_closed = None
        m.close()
        if s.invite is not None:
            s.invite.cancel()  # CANCEL; a crossing 2xx gets a BYE in _uac_answered
        if s.dialog is not None and not s.dialog.terminated:
            s.dialog.on_bye = None
            self._bye(s.dialog)
        while s.queue:
            d = s.queue.popleft()[4]
            d.errback(MSRPSendError(NO_SESSION, f"session ended before set-up: {why}"))
        log.info("MSRP session {sid} ({role}) ended: {why}", sid=s.sid, role=s.role, why=why)
        if quiet:
            return
        if s.role == "uac" and not was_established and not local:
            self._call(s, "failed", s.sid, code, reason)
        else:
            self._call(s, "terminated", s.sid, why)

    def _bye(self, dialog: Any) -> None:
        try:
            d = dialog.bye()
        except Exception:
            log.failure("BYE could not be sent")
            return
        self._byes.add(d)

        def done(result: object) -> None:
            self._byes.discard(d)
            if isinstance(result, Failure):
                log.info("BYE got no answer: {why}", why=result.getErrorMessage())

        d.addBoth(done)

    def _call(self, s: _Session, name: str, *args: Any) -> None:
        if s.starting:
            self._clock.callLater(0, self._call_now, s, name, args)
        else:
            self._call_now(s, name, args)

    def _call_now(self, s: _Session, name: str, args: tuple[Any, ...]) -> None:
        fn: Callable[..., Any] | None = getattr(s.handler, name, None)
        if fn is None:
            return
        try:
            fn(*args)
        except Exception:
            log.failure("handler {name} for session {sid} failed", name=name, sid=s.sid)


def _uri_of(value: str | None) -> str:
    """The URI of a From/To header value (the value itself if it does not parse)."""
    if not value:
        return ""
    try:
        return str(parse_name_addr(value).uri)
    except Exception:
        return value.strip()


def _answer_body(dialog: Any) -> bytes:
    """The SDP answer carried by the 2xx that created a UAC dialog (``Dialog.remote_sdp``)."""
    body = getattr(dialog, "remote_sdp", b"")
    if not body:
        raise sdp.SDPError("the 2xx carries no SDP answer")
    return bytes(body)


def _capture_ack_body(s: _Session) -> None:
    """Keep the body of the ACK that confirms a late-offer dialog: the SDP answer.

    ``Dialog.on_ack(ack)`` confirms the dialog but keeps no ACK body, so the instance's
    method is wrapped: the ACK that fires ``confirmed`` is the one whose body is the
    answer (a retransmitted ACK, or one for another CSeq, confirms nothing).
    """
    dialog = s.dialog
    original = getattr(dialog, "on_ack", None)
    if original is None:
        return

    def on_ack(ack: Any) -> None:
        confirming = not dialog.confirmed.called
        if confirming:
            s.ack_body = (bytes(getattr(ack, "body", b"") or b""), getattr(ack, "content_type", None))
        original(ack)
        if confirming and not dialog.confirmed.called:
            s.ack_body = (b"", None)  # not the ACK of our 200 after all

    dialog.on_ack = on_ack
