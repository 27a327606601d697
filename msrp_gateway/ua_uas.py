"""Answering a session (UAS): our SDP in the 200, on the transport the offer asks for.

An offer is answered on our listener of its kind (`ua_transports.local_uris`); an INVITE
without SDP is a late offer (RFC 3264 s.4): our 200 offers and the ACK must answer, else
the dialog ends with BYE.
"""

from __future__ import annotations

from typing import Any, Sequence

from twisted.logger import Logger
from twisted.python.failure import Failure

from . import sdp
from .msrp.message import MSRPParseError
from .ua_core import UACore
from .ua_records import (
    SDP_TYPE,
    MSRPSessionAPI,
    SessionState,
    UAError,
    UASession,
    split_types,
    uri_of,
)
from .ua_transports import local_uris

__all__ = ["UASAnswering"]

log = Logger(namespace="msrp_gateway.ua")

# The m= protos we can answer on.
_PROTOS = (sdp.PROTO_TCP, sdp.PROTO_TLS)


class UASAnswering(UACore):
    """`answer()` and what follows our 200 until the session is bound or ended."""

    def answer(self, txn: Any, content_types: str | Sequence[str], handler: Any) -> str:
        """Answer an INVITE (200 with our SDP); returns the session id.

        The answer uses the transport the offer asks for (``TCP/MSRP`` or
        ``TCP/TLS/MSRP``), on our listener of that kind. An INVITE without a body is a
        late offer (RFC 3264 s.4): the 200 carries our offer and the ACK must carry the
        answer, else the dialog ends with BYE. Raises `UAError` without replying when the
        offer is unusable: the caller sends ``code``/``reason`` with ``headers`` (488 +
        Warning, 415 + Accept, 503).
        """
        types = split_types(content_types)
        self._check_room()
        req = txn.request
        if not req.body:
            return self._answer_late_offer(txn, types, handler)
        ctype = (req.content_type or "").split(";", 1)[0].strip().lower()
        if ctype and ctype != SDP_TYPE:
            raise UAError(415, "Unsupported Media Type", [("Accept", SDP_TYPE)])
        uris = local_uris(self._msrp)
        if not uris:  # no my_uri configured and nothing listening (yet)
            raise UAError(503, "Service Unavailable",
                          [("Warning", '399 msrpgw "no MSRP socket to answer on"')])
        try:
            offer = sdp.parse_sdp(req.body)
            wanted = sdp.find_msrp_media(offer, tuple(p for p in _PROTOS if p in uris))
        except sdp.SDPError as e:
            log.info("offer from {uri} refused {code}: {why}", uri=uri_of(req.headers.get("From")),
                     code=e.code, why=e.reason)
            raise UAError(e.code, "Not Acceptable Here", [("Warning", e.warning())]) from None
        msess = self._create_msrp(types, uris[wanted.proto])
        try:
            neg = sdp.build_answer(offer, list(msess.local_path), types, prefer_active=self._actpass_active,
                                   fingerprints=self._local_fingerprints(msess.local_path))
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
        self._bind(s, neg.active, neg.peer)
        s.starting = False
        return s.sid

    def _answer_late_offer(self, txn: Any, types: list[str], handler: Any) -> str:
        """An INVITE without SDP: offer in our 200, read the answer from the ACK."""
        msess = self._create_msrp(types)  # our offer is on my_uri's transport
        try:
            offer = sdp.build_offer(list(msess.local_path), types, setup=self._offer_setup,
                                    fingerprints=self._local_fingerprints(msess.local_path))
        except Exception as e:
            msess.close()
            log.failure("cannot build the offer for a late-offer INVITE")
            raise UAError(500, "Server Internal Error") from e
        s = self._uas_session(txn.request, msess, handler, types)
        s.offer = offer
        s.late_offer = True
        self._accept(txn, s, offer)  # the dialog keeps the confirming ACK's body
        # the ACK and the MSRP binding must both be done within setup_timeout
        s.setup_call = self._clock.callLater(self._setup_timeout, self._setup_expired, s)
        s.starting = False
        return s.sid

    def _uas_session(self, req: Any, msess: MSRPSessionAPI, handler: Any, types: list[str]) -> UASession:
        s = UASession(
            msess.session_id, "uas", handler, msess, list(types),
            uri_of(req.headers.get("From")), uri_of(req.headers.get("To")), str(req.uri),
            self._clock.seconds(),
        )
        self._register(s)
        return s

    def _accept(self, txn: Any, s: UASession, body: bytes) -> None:
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

    def _uas_acked(self, _: object, s: UASession) -> None:
        if s.state is SessionState.ENDED:
            return
        if s.dialog is not None and s.dialog.terminated:
            return  # a BYE before the ACK also confirms the dialog: on_bye ends the session
        s.acked = True
        if s.late_offer:
            self._late_answer(s)
            return
        self._maybe_established(s)

    def _late_answer(self, s: UASession) -> None:
        """The ACK to our late-offer 200: it must carry a usable answer (RFC 3264 s.4)."""
        # the ACK that confirmed the dialog (`Dialog.ack_body`, kept before `confirmed`
        # fired); a dialog confirmed by a BYE never gets here (`_uas_acked`)
        body: bytes = s.dialog.ack_body if s.dialog is not None else b""
        ctype: str | None = s.dialog.ack_content_type if s.dialog is not None else None
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
        self._bind(s, active, peer)

    def _uas_no_ack(self, f: Failure, s: UASession) -> None:
        if s.state is not SessionState.ENDED:
            self._finish(s, why="no ACK for our 200")

