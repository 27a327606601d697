"""The UA's shared machinery: the session table, MSRP binding, set-up timers, the one ending.

`UACore` is the base of `MSRPUserAgent`: offering (`ua_uac`) and answering (`ua_uas`)
both register a session here, bind it (connect, or wait for the peer's binding SEND)
and end it through `_finish`, which releases everything and tells the handler once.

msrps (RFC 4975 s.14.4, RFC 8122): our SDP carries the fingerprint of the certificate our
MSRP stack presents; a peer's ``a=fingerprint`` pins its session, so only a TLS connection
presenting that certificate binds it (a mismatch fails the set-up like any failed bind).
Without fingerprints from the peer, the stack's CA verification applies as before.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from .msrp.session import Clock, MSRPSendError, SessionError
from .sdp import PROTO_TLS, Fingerprint, MSRPMedia, proto_for_uri
from .ua_records import (
    NO_SESSION,
    SETUP_TIMEOUT,
    MSRPSessionAPI,
    SessionState,
    UAError,
    UASession,
    UASettings,
)
from .ua_transports import session_on

__all__ = ["UACore"]

log = Logger(namespace="msrp_gateway.ua")


class UACore:
    """Sessions by id, their timers and endings; what offering and answering share."""

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
        self._sessions: dict[str, UASession] = {}
        self._byes: set[defer.Deferred[Any]] = set()

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

    def _register(self, s: UASession) -> None:
        self._sessions[s.sid] = s
        m = s.msrp
        m.on_message = lambda msg: self._call(s, "message_received", s.sid, msg)
        m.on_report = lambda rep: self._call(s, "report_received", s.sid, rep)
        m.on_closed = lambda reason: self._finish(s, why=f"MSRP connection lost: {reason}")
        if self._max_duration > 0:
            s.duration_call = self._clock.callLater(self._max_duration, self._expired, s)

    def _expired(self, s: UASession) -> None:
        s.duration_call = None
        self._finish(s, why=f"max_duration ({self._max_duration:g} s) reached", local=True)

    def _local_fingerprints(self, path: Sequence[str]) -> Sequence[Fingerprint]:
        """Our certificate's fingerprint for an msrps path (none for msrp:, a stack without
        TLS, or a path through our relay, whose certificate the peer meets instead): what
        our offer or answer puts in ``a=fingerprint``."""
        if len(path) != 1 or proto_for_uri(path[-1]) != PROTO_TLS:
            return ()
        get = getattr(self._msrp, "local_fingerprint", None)
        fp = get() if get is not None else None
        return () if fp is None else (fp,)

    def _pin(self, s: UASession, peer: MSRPMedia) -> None:
        """Hold the peer to the certificate its SDP fingerprints name (TLS streams only)."""
        if not peer.tls:
            return
        if peer.ignored_fingerprints:
            log.info("session {sid}: a=fingerprint lines ignored: {why}", sid=s.sid,
                     why="; ".join(peer.ignored_fingerprints)[:300])
        if not peer.fingerprints:
            log.debug("session {sid}: msrps peer without a=fingerprint: CA verification "
                      "as configured", sid=s.sid)
            return
        expect = getattr(self._msrp, "expect_certificate", None)
        if expect is None:
            log.warn("session {sid}: the MSRP stack cannot check certificate fingerprints",
                     sid=s.sid)
            return
        expect(s.msrp, peer.fingerprints,
               lambda why: self._finish(s, why=f"MSRP session not bound: {why}"))

    def _bind(self, s: UASession, active: bool, peer: MSRPMedia | None = None) -> None:
        """Connect and bind (active side) or wait for the peer's binding SEND (passive);
        `peer`'s fingerprints, if any, pin the connection's certificate first."""
        if peer is not None:
            self._pin(s, peer)
            if s.state is SessionState.ENDED:
                return
        if s.setup_call is None:
            s.setup_call = self._clock.callLater(self._setup_timeout, self._setup_expired, s)
        d = s.msrp.connect() if active else s.msrp.wait_bound(self._setup_timeout)
        d.addCallbacks(self._bound, self._bind_failed, callbackArgs=(s,), errbackArgs=(s,))

    def _bound(self, _: object, s: UASession) -> None:
        if s.state is SessionState.ENDED:
            return
        s.bound = True
        while s.queue:
            ct, body, fr, sr, d = s.queue.popleft()
            s.msrp.send(ct, body, failure_report=fr, success_report=sr).chainDeferred(d)
        self._maybe_established(s)

    def _bind_failed(self, f: Failure, s: UASession) -> None:
        if s.state is not SessionState.ENDED:
            self._finish(s, why=f"MSRP session not bound: {f.getErrorMessage()}")

    def _setup_expired(self, s: UASession) -> None:
        s.setup_call = None
        what = "MSRP binding" if s.acked else "ACK and MSRP binding"
        self._finish(s, why=f"{what} not done within {self._setup_timeout:g} s")

    def _maybe_established(self, s: UASession) -> None:
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
        s: UASession,
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

    def _call(self, s: UASession, name: str, *args: Any) -> None:
        if s.starting:
            self._clock.callLater(0, self._call_now, s, name, args)
        else:
            self._call_now(s, name, args)

    def _call_now(self, s: UASession, name: str, args: tuple[Any, ...]) -> None:
        fn: Callable[..., Any] | None = getattr(s.handler, name, None)
        if fn is None:
            return
        try:
            fn(*args)
        except Exception:
            log.failure("handler {name} for session {sid} failed", name=name, sid=s.sid)
