"""INVITE dialogs as UAC and UAS (RFC 3261 s.12, s.13.3.1.4, s.14, s.15).

A ``Dialog`` keeps the state of s.12 (Call-ID, tags, CSeq, route set, remote target), builds
in-dialog requests (s.12.2.1.1, loose and strict routing), sends the ACK for a 2xx as a new
transaction-less request, retransmits its own 2xx until the ACK comes (T1 doubling to T2,
given up after 64*T1), answers BYE and re-INVITE, and sends BYE.  It owns no socket: the
stack that creates it is its ``owner`` (see ``DialogOwner``), which keeps this module free of
any import of ``stack.py``.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any, Callable, Iterable, Protocol

from twisted.internet import defer
from twisted.internet.base import DelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from .message import Headers, SIPRequest, SIPResponse
from .transaction import SIPTimeout, TimerSettings
from .uri import SIPParseError, parse_name_addr

if TYPE_CHECKING:
    from .transport import Peer

log = Logger()

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, MESSAGE"


class DialogOwner(Protocol):
    """What a dialog needs from the stack that made it."""

    reactor: Any
    timers: TimerSettings

    def contact(self) -> str: ...
    def send_request(self, req: SIPRequest) -> defer.Deferred[SIPResponse]: ...
    def send_stateless(self, req: SIPRequest) -> defer.Deferred[None]: ...
    def send_response(self, resp: SIPResponse, peer: Peer) -> defer.Deferred[None]: ...
    def forget_dialog(self, dialog: Dialog) -> None: ...


def new_tag() -> str:
    """A From/To tag with 64 bits from ``secrets`` (s.19.3 asks for 32 at least)."""
    return secrets.token_hex(8)


def _uri_of(value: str) -> str:
    """The URI inside a name-addr / addr-spec header value (the value itself if unparsable)."""
    try:
        return parse_name_addr(value).uri
    except SIPParseError:
        return value.strip().strip("<>")


def _without_tag(value: str) -> str:
    """The header value of From/To without its tag parameter, to add our own."""
    try:
        na = parse_name_addr(value)
    except SIPParseError:
        return value
    na.params = {k: v for k, v in na.params.items() if k.lower() != "tag"}
    return str(na)


def _is_sdp(content_type: str | None) -> bool:
    """Is this Content-Type application/sdp (parameters and case aside)?"""
    if content_type is None:
        return False
    return content_type.split(";", 1)[0].strip().lower() == "application/sdp"


def _is_loose(route: str) -> bool:
    """Does this Route value name a loose router (``;lr`` on its URI, s.16.12)?"""
    try:
        uri = parse_name_addr(route).sip_uri
    except SIPParseError:
        return True
    return uri.has_param("lr")


class _Pending2xx:
    """A 2xx to an INVITE we sent and keep resending until its ACK (s.13.3.1.4)."""

    __slots__ = ("response", "peer", "cseq", "interval", "retransmit", "give_up")

    def __init__(self, response: SIPResponse, peer: Peer, cseq: int, interval: float) -> None:
        self.response = response
        self.peer = peer
        self.cseq = cseq
        self.interval = interval
        self.retransmit: DelayedCall | None = None
        self.give_up: DelayedCall | None = None

    def stop(self) -> None:
        for call in (self.retransmit, self.give_up):
            if call is not None and call.active():
                call.cancel()
        self.retransmit = self.give_up = None


class Dialog:
    """One INVITE dialog; see docs/internals.md for the attributes the UA relies on."""

    def __init__(self, owner: DialogOwner, *, role: str, call_id: str, local_tag: str,
                 remote_tag: str, local_party: str, remote_party: str, remote_target: str,
                 route_set: list[str], local_cseq: int, remote_cseq: int | None) -> None:
        self._owner = owner
        self.role = role  # "uac" or "uas"
        self.call_id = call_id
        self.local_tag = local_tag
        self.remote_tag = remote_tag
        # From/To header values (without tags) used to build our requests
        self._local_party = local_party
        self._remote_party = remote_party
        self.local_uri = _uri_of(local_party)
        self.remote_uri = _uri_of(remote_party)
        self.remote_target = remote_target
        self.route_set = route_set
        self.local_cseq = local_cseq
        self.remote_cseq = remote_cseq
        self.terminated = False
        self.confirmed: defer.Deferred[Dialog] = defer.Deferred()
        self.on_bye: Callable[[], None] | None = None
        self.on_request: Callable[[Any], None] | None = None
        self.response: SIPResponse | None = None  # UAC: the 2xx that made the dialog
        # the peer's latest SDP: the 2xx (UAC), the INVITE or, for an offer in our 2xx,
        # the ACK (UAS, RFC 3261 s.13.2.1 late offer); re-INVITE/UPDATE bodies too
        self.remote_sdp: bytes = b""
        # UAS: body and Content-Type of the ACK that last acknowledged a 2xx of ours (the
        # first confirms the dialog and is set before `confirmed` fires), whatever its type
        self.ack_body: bytes = b""
        self.ack_content_type: str | None = None
        self.local_sdp: bytes = b""
        self.local_content_type: str | None = None
        self._last_ack: SIPRequest | None = None
        self._pending: _Pending2xx | None = None
        self._bye_started = False
        self._bye_waiting_ack = False
        self._bye_waiters: list[defer.Deferred[Any]] = []
        self._bye_result: tuple[Any] | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.call_id, self.local_tag, self.remote_tag)

    def __repr__(self) -> str:
        return f"<Dialog {self.role} {self.call_id} {self.local_tag}/{self.remote_tag}>"

    # -- construction --------------------------------------------------------------------

    @classmethod
    def from_uac(cls, owner: DialogOwner, invite: SIPRequest, resp: SIPResponse) -> Dialog:
        """s.12.1.2: the dialog a 2xx (or 1xx with tag) to our INVITE creates."""
        contact = resp.headers.get_all("Contact")
        to_value = resp.headers.get("To") or ""
        route_set = list(reversed(resp.headers.get_all("Record-Route")))
        dialog = cls(owner, role="uac", call_id=invite.call_id or "", local_tag=invite.from_tag or "",
                   remote_tag=resp.to_tag or "",
                   local_party=_without_tag(invite.headers.get("From") or ""),
                   remote_party=_without_tag(to_value),
                   remote_target=_uri_of(contact[0]) if contact else invite.uri,
                   route_set=route_set, local_cseq=invite.cseq[0], remote_cseq=None)
        dialog.response = resp
        dialog.remote_sdp = resp.body
        dialog.local_sdp = invite.body
        dialog.local_content_type = invite.content_type
        return dialog

    @classmethod
    def from_uas(cls, owner: DialogOwner, invite: SIPRequest, local_tag: str) -> Dialog:
        """s.12.1.1: the dialog our 2xx to an INVITE creates."""
        contact = invite.headers.get_all("Contact")
        dialog = cls(owner, role="uas", call_id=invite.call_id or "", local_tag=local_tag,
                   remote_tag=invite.from_tag or "",
                   local_party=_without_tag(invite.headers.get("To") or ""),
                   remote_party=_without_tag(invite.headers.get("From") or ""),
                   remote_target=_uri_of(contact[0]) if contact else _uri_of(
                       invite.headers.get("From") or ""),
                   route_set=list(invite.headers.get_all("Record-Route")),
                   local_cseq=secrets.randbelow(2 ** 16) + 1, remote_cseq=invite.cseq[0])
        dialog.remote_sdp = invite.body
        return dialog

    # -- requests we send ----------------------------------------------------------------

    def build_request(self, method: str, *, body: bytes = b"", content_type: str | None = None,
                      headers: Iterable[tuple[str, str]] = (), cseq: int | None = None) -> SIPRequest:
        """s.12.2.1.1: an in-dialog request; CSeq advances unless given (ACK reuses INVITE's)."""
        if cseq is None:
            self.local_cseq += 1
            cseq = self.local_cseq
        routes = self.route_set
        if routes and not _is_loose(routes[0]):
            ruri = _uri_of(routes[0])  # strict router: it gets the R-URI, target goes last
            routes = routes[1:] + [f"<{self.remote_target}>"]
        else:
            ruri = self.remote_target
        h = Headers()
        for route in routes:
            h.add("Route", route)
        h.add("Max-Forwards", "70")
        h.add("From", f"{self._local_party};tag={self.local_tag}")
        h.add("To", f"{self._remote_party};tag={self.remote_tag}")
        h.add("Call-ID", self.call_id)
        h.add("CSeq", f"{cseq} {method}")
        if method in ("INVITE", "UPDATE"):
            h.add("Contact", self._owner.contact())
        for name, value in headers:
            h.add(name, value)
        if content_type is not None:
            h.set("Content-Type", content_type)
        return SIPRequest(method, ruri, h, body)

    def send_ack(self, resp: SIPResponse) -> None:
        """UAC: ACK a 2xx (first or retransmitted) for this dialog's INVITE (s.13.2.2.4)."""
        cseq = resp.cseq[0]
        if self._last_ack is None or self._last_ack.cseq[0] != cseq:
            self._last_ack = self.build_request("ACK", cseq=cseq)
        self._owner.send_stateless(self._last_ack).addErrback(
            lambda f: log.warn("ACK in {dialog} not sent: {err}", dialog=self, err=f.value))

    def on_2xx_retransmission(self, resp: SIPResponse) -> None:
        """UAC: a 2xx seen again means our ACK was lost; send it again (s.13.2.2.4)."""
        if self._last_ack is not None and self._last_ack.cseq[0] == resp.cseq[0]:
            self._owner.send_stateless(self._last_ack).addErrback(lambda f: None)

    def bye(self) -> defer.Deferred[Any]:
        """End the dialog with BYE; fires with the BYE's final response (None if already over).

        As UAS with the ACK still missing, the BYE waits for the ACK or its timeout (s.15).
        Every caller gets its own Deferred; the BYE is sent once.
        """
        if self._bye_result is not None:
            return self._bye_result_deferred()
        if self.terminated and not self._bye_started:
            return defer.succeed(None)
        d: defer.Deferred[Any] = defer.Deferred()
        self._bye_waiters.append(d)
        if not self._bye_started:
            self._bye_started = True
            if self._pending is not None and self.role == "uas" and not self.confirmed.called:
                self._bye_waiting_ack = True
            else:
                self._send_bye()
        return d

    def _bye_result_deferred(self) -> defer.Deferred[Any]:
        result = self._bye_result[0] if self._bye_result else None
        if isinstance(result, Failure):
            return defer.fail(result)
        return defer.succeed(result)

    def _send_bye(self) -> None:
        self._bye_started = True
        self._bye_waiting_ack = False
        req = self.build_request("BYE")
        self._end(forget=False)  # kept until the BYE ends: a crossing BYE still gets 200
        self._owner.send_request(req).addBoth(self._bye_done)

    @property
    def closing(self) -> bool:
        """Our BYE is sent and not yet answered: the dialog is over but still known, so a
        BYE from the peer that crossed ours is answered 200, not 481 (s.15.1.2)."""
        return self._bye_started and self._bye_result is None and self.terminated

    def _bye_done(self, result: Any) -> None:
        self._bye_result = (result,)
        self._owner.forget_dialog(self)
        if isinstance(result, Failure):
            log.info("BYE in {dialog}: {err}", dialog=self, err=result.value)
        waiters, self._bye_waiters = self._bye_waiters, []
        for d in waiters:
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(result)

    def stop_timers(self) -> None:
        """Stop resending our 2xx (stack shutdown); the dialog state is left as it is."""
        if self._pending is not None:
            self._pending.stop()
            self._pending = None

    def _end(self, *, forget: bool = True) -> None:
        if self.terminated:
            return
        self.terminated = True
        if self._pending is not None:
            self._pending.stop()
            self._pending = None
        if forget:
            self._owner.forget_dialog(self)

    # -- 2xx retransmission (UAS) --------------------------------------------------------

    def send_2xx(self, resp: SIPResponse, peer: Peer, *, already_sent: bool = False) -> None:
        """UAS: send a 2xx to an INVITE and keep sending it until the ACK (s.13.3.1.4).

        ``already_sent``: the server transaction sent the first copy (RFC 6026 Accepted).
        Resent on every transport, as s.13.3.1.4 says: a hop further on may be UDP.
        """
        if self._pending is not None:
            self._pending.stop()
        if resp.body:
            self.local_sdp = resp.body
            self.local_content_type = resp.content_type
        t1 = self._owner.timers.t1
        pending = _Pending2xx(resp, peer, resp.cseq[0], t1)
        self._pending = pending
        reactor = self._owner.reactor
        if not already_sent:
            self._transmit(pending)
        pending.retransmit = reactor.callLater(t1, self._retransmit, pending)
        pending.give_up = reactor.callLater(64 * t1, self._no_ack, pending)

    def _transmit(self, pending: _Pending2xx) -> None:
        self._owner.send_response(pending.response, pending.peer).addErrback(
            lambda f: log.warn("2xx in {dialog} not sent: {err}", dialog=self, err=f.value))

    def _retransmit(self, pending: _Pending2xx) -> None:
        if self._pending is not pending:
            return
        self._transmit(pending)
        pending.interval = min(2 * pending.interval, self._owner.timers.t2)
        pending.retransmit = self._owner.reactor.callLater(pending.interval, self._retransmit,
                                                           pending)

    def _no_ack(self, pending: _Pending2xx) -> None:
        """64*T1 without ACK: the dialog is confirmed and then ended with BYE (s.13.3.1.4)."""
        if self._pending is not pending:
            return
        pending.stop()
        self._pending = None
        log.info("no ACK for the 2xx in {dialog}: ending it", dialog=self)
        if not self.confirmed.called:
            self.confirmed.errback(SIPTimeout("no ACK for 2xx"))
        if not self.terminated:
            self._send_bye()

    def on_ack(self, ack: SIPRequest) -> None:
        """An ACK for this dialog: stops 2xx retransmission; confirms the dialog the 1st time.

        Its body is kept (`ack_body`, `ack_content_type`) before `confirmed` fires: after a
        2xx that carried an offer, the ACK carries the answer (RFC 3261 s.13.2.1), which
        becomes `remote_sdp` when it is application/sdp. A retransmitted ACK, or one for
        another CSeq, changes nothing.
        """
        pending = self._pending
        if pending is None or ack.cseq[0] != pending.cseq:
            return
        pending.stop()
        self._pending = None
        self.ack_body = ack.body
        self.ack_content_type = ack.content_type
        if ack.body and _is_sdp(ack.content_type):
            self.remote_sdp = ack.body
        if not self.confirmed.called:
            self.confirmed.callback(self)
        if self._bye_waiting_ack:
            self._send_bye()

    # -- requests we receive -------------------------------------------------------------

    def receive(self, txn: Any) -> None:
        """An in-dialog request (not ACK/CANCEL) in a server transaction (s.12.2.2)."""
        req: SIPRequest = txn.request
        cseq = req.cseq[0]
        if self.remote_cseq is not None and cseq <= self.remote_cseq:
            txn.respond(500, "CSeq Out of Order")
            return
        self.remote_cseq = cseq
        method = req.method
        if method == "BYE":
            txn.respond(200)
            was_confirmed = self.confirmed.called
            self._end()
            if not was_confirmed:
                # a BYE before the ACK (s.13.3.1.4 allows it): the dialog did exist
                self.confirmed.callback(self)
            if not self._bye_started and self.on_bye is not None:
                self.on_bye()
            return
        if method in ("INVITE", "UPDATE"):
            contact = req.headers.get_all("Contact")
            if contact:
                self.remote_target = _uri_of(contact[0])  # target refresh (s.12.2.2)
            if req.body:
                self.remote_sdp = req.body
        if self.on_request is not None:
            self.on_request(txn)
            return
        if method == "INVITE":
            if self._pending is not None:
                txn.respond(500, "Server Internal Error", headers=[("Retry-After", "1")])
                return  # s.14.2: a re-INVITE while our previous 2xx is unacknowledged
            txn.respond(200, body=self.local_sdp, content_type=self.local_content_type)
        elif method == "OPTIONS":
            txn.respond(200, headers=[("Allow", ALLOW)])
        else:
            txn.respond(405, headers=[("Allow", ALLOW)])
