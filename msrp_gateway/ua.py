"""The MSRP user agent (OpenSIPS msrp_ua): SIP INVITE sessions that carry MSRP.

One `MSRPUserAgent` joins the SIP stack (INVITE dialogs) and the MSRP stack (sessions) with
SDP offer/answer in between. As offerer (`start`) it sends the INVITE, checks the answer,
connects or waits per ``a=setup`` and binds; as answerer (`answer`) it replies 200 with the
answer, on the transport the offer asks for, and waits for the ACK and the binding (an
INVITE without SDP gets our offer in the 200 and must answer in the ACK). The parts:
`ua_records`, `ua_core`, `ua_uac`, `ua_uas`, `ua_transports`; every public name is
importable from here. The handler hears exactly one `failed` or
`terminated` per session, on every path, after which nothing of the session is left: no
timer, no transaction waiting on us, no dialog, no MSRP session.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.logger import Logger

from .msrp.session import MSRPSendError
from .ua_records import (
    NO_SESSION,
    QUEUE_FULL,
    SDP_TYPE,
    SETUP_TIMEOUT,
    MSRPSessionAPI,
    SessionState,
    UAError,
    UAHandler,
    UASessionInfo,
    UASettings,
)
from .ua_uac import UACOffering
from .ua_uas import UASAnswering

__all__ = [
    "MSRPUserAgent",
    "UAError",
    "UASettings",
    "UASessionInfo",
    "SessionState",
    "UAHandler",
    "MSRPSessionAPI",
    "SETUP_TIMEOUT",
    "SDP_TYPE",
    "NO_SESSION",
    "QUEUE_FULL",
]

log = Logger()


class MSRPUserAgent(UACOffering, UASAnswering):
    """Starts, answers, runs and ends MSRP sessions set up over SIP INVITE.

    Offering is `ua_uac`, answering `ua_uas`, the shared set-up and ending `ua_core`;
    here are the calls on a running session.
    """

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
