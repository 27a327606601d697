"""Offering a session (UAC): INVITE out with our SDP, the answer read from the 2xx.

A final reply >= 300, Timer B or a transport error is the offer's `failed`; a 2xx whose
answer is unusable is ACKed (by the stack), BYEd and `failed` too.
"""

from __future__ import annotations

from typing import Any, Sequence

from twisted.logger import Logger
from twisted.python.failure import Failure

from . import sdp
from .msrp.message import MSRPParseError
from .sip.transaction import SIPFinalResponse, SIPTransportError
from .ua_core import UACore
from .ua_records import SDP_TYPE, SessionState, UAError, UASession, split_types

__all__ = ["UACOffering"]

log = Logger(namespace="msrp_gateway.ua")


class UACOffering(UACore):
    """`start()` and what follows the INVITE until the session is bound or failed."""

    def start(self, content_types: str | Sequence[str], from_uri: str, to_uri: str, ruri: str, handler: Any) -> str:
        """Offer a session (INVITE out); returns its session id. Raises `UAError` if it cannot."""
        types = split_types(content_types)
        self._check_room()
        msess = self._create_msrp(types)
        try:
            offer = sdp.build_offer(list(msess.local_path), types, setup=self._offer_setup,
                                    fingerprints=self._local_fingerprints(msess.local_path))
            req = self._sip.new_request(
                "INVITE", from_uri, to_uri, ruri, body=offer, content_type=SDP_TYPE
            )
            if self._contact:
                req.headers.set("Contact", f"<{self._contact}>")
        except Exception as e:
            msess.close()
            log.failure("cannot build the INVITE for {ruri}", ruri=ruri)
            raise UAError(500, "Server Internal Error") from e
        s = UASession(msess.session_id, "uac", handler, msess, types, from_uri, to_uri, ruri, self._clock.seconds())
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

    def _uac_answered(self, dialog: Any, s: UASession) -> None:
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
        self._bind(s, active, peer)

    def _uac_refused(self, f: Failure, s: UASession) -> None:
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


def _answer_body(dialog: Any) -> bytes:
    """The SDP answer carried by the 2xx that created a UAC dialog (``Dialog.remote_sdp``)."""
    body = getattr(dialog, "remote_sdp", b"")
    if not body:
        raise sdp.SDPError("the 2xx carries no SDP answer")
    return bytes(body)
