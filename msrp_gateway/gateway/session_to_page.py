"""Session mode to page mode: an INVITE answered through the UA, each SEND then a MESSAGE.

``msrp_gw_answer`` answers the INVITE and records where the MESSAGEs go; every SEND with a
body is paged as a MESSAGE (``send_message``, bounded by max_pending_messages) and a MESSAGE
that fails goes back to the MSRP peer as a failure REPORT.

With ``delivery = "end_to_end"`` a SEND that asked for ``Success-Report: yes`` gets its
success REPORT once the MESSAGE it became is answered 2xx (``msg.report_success()``; the
MSRP layer must then hold back its own hop-by-hop one), so both REPORTs carry the SIP
outcome.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from msrp_gateway.registry import (
    GatewaySession,
    Origin,
    State,
    strip_uri,
    valid_uri,
)

from .replies import (
    ERR_PARAMS,
    ERR_UA,
    OK,
    reply,
    status_of,
)
from .sessions import GatewayBase, _SessionHandler, ua_types

__all__ = ["SessionToPage"]

log = Logger(namespace="msrp_gateway.gateway")

# SIP final status of a generated MESSAGE -> MSRP status of the failure REPORT (RFC 4975
# s.10); anything else is reported as 400 with the SIP status in the comment.
_SIP_TO_MSRP_STATUS = {400: 400, 403: 403, 408: 408, 413: 413, 415: 415, 488: 415, 503: 408}


class SessionToPage(GatewayBase):
    """``msrp_gw_answer`` and the MESSAGEs made from SENDs; see the module docstring."""

    def msrp_gw_answer(
        self,
        req: Any,
        key: str,
        content_types: str | Iterable[str],
        from_uri: str,
        to_uri: str,
        ruri: str,
    ) -> int:
        """Answer an initial INVITE through the UA; every SEND on the session becomes a
        MESSAGE from `from_uri` to `to_uri` sent to `ruri`. Nothing is created on error."""
        types = self._check_call(req, "msrp_gw_answer", "INVITE", key, content_types)
        if types is None:
            return ERR_PARAMS
        checked: list[str] = []
        for name, value in (("From", from_uri), ("To", to_uri), ("RURI", ruri)):
            uri = strip_uri(value) if isinstance(value, str) else ""
            if not uri or not valid_uri(uri):
                log.error("msrp_gw_answer {key}: not a valid SIP URI in {name} param [{value}]",
                          key=key, name=name, value=value)
                reply(req, 400, f"Bad {name} URI")
                return ERR_PARAMS
            checked.append(uri)
        if self._stopping:
            reply(req, 503, "Service Unavailable")
            return ERR_UA
        now = self.reactor.seconds()
        sess = GatewaySession(
            key=key, from_uri=checked[0], to_uri=checked[1], ruri=checked[2],
            origin=Origin.INVITE, content_types=types,
            created=now, last_send=now, last_message=now,
        )
        not_added = self._add(req, "msrp_gw_answer", sess)
        if not_added is not None:
            return not_added
        self.stats.sessions_created += 1
        txn = getattr(req, "transaction", req)
        try:
            sess.ua_session_id = self.ua.answer(txn, ua_types(types), _SessionHandler(self, sess))
        except Exception as e:  # noqa: BLE001 - UAError(code, reason): we answer, UA did not
            log.warn("msrp_gw_answer {key}: offer refused: {code} {error}",
                     key=key, code=status_of(e), error=str(e))
            return self._ua_refused(req, sess, e)
        try:
            req.owned = True
        except AttributeError:
            pass
        log.info("gateway session {key} opened by INVITE (UA session {sid})",
                 key=key, sid=sess.ua_session_id)
        return OK

    def send_message(
        self,
        from_uri: str,
        to_uri: str,
        ruri: str,
        body: bytes,
        content_type: str = "text/plain",
        *,
        key: str = "",
    ) -> defer.Deferred[tuple[int, str]]:
        """Send a page-mode MESSAGE; fires (status, reason) of its final answer, 408 on
        timeout and 503 when it could not be sent. Never errbacks."""
        if self._pending_messages >= self.settings.max_pending_messages:
            log.error("MESSAGE for gateway session {key} not sent: max_pending_messages "
                      "({n}) reached", key=key, n=self.settings.max_pending_messages)
            return defer.succeed((503, "Too Many Pending MESSAGEs"))
        try:
            request = self.sip_stack.new_request(
                "MESSAGE", from_uri, to_uri, ruri, body=body, content_type=content_type
            )
            d = self.sip_stack.send_request(request)
        except Exception as e:  # noqa: BLE001 - a bad URI or a stack refusal
            log.error("MESSAGE for gateway session {key} not sent: {error}",
                      key=key, error=str(e))
            return defer.succeed((503, "Service Unavailable"))
        self._pending_messages += 1
        # one callback pair per MESSAGE, no closures: this runs for every SEND paged
        result: defer.Deferred[tuple[int, str]] = d.addCallbacks(
            self._message_answered, self._message_failed, callbackArgs=(key,),
            errbackArgs=(key,))
        return result

    def _message_answered(self, response: Any, key: str) -> tuple[int, str]:
        """Every MESSAGE the gateway generates (paged SENDs, failure notices) that is
        refused is logged here with its key, whoever asked for it."""
        self._pending_messages -= 1
        status = int(response.status)
        reason = str(response.reason)
        if status >= 300:
            log.warn("gateway session {key}: MESSAGE failed: {status} {reason}",
                     key=key, status=status, reason=reason)
        return (status, reason)

    def _message_failed(self, f: Failure, key: str) -> tuple[int, str]:
        self._pending_messages -= 1
        # SIPTimeout (Timer F) carries code 408, SIPTransportError 503 (s.8.1.3.1)
        code = getattr(f.value, "code", None)
        if code == 408 or type(f.value).__name__ == "SIPTimeout":
            log.warn("gateway session {key}: MESSAGE failed: {status} no final answer "
                     "(timeout)", key=key, status=408)
            return (408, "Request Timeout")
        log.warn("gateway session {key}: MESSAGE failed: {status} not sent: {error}",
                 key=key, status=503, error=f.getErrorMessage())
        return (503, "Service Unavailable")

    def _on_message(self, sess: GatewaySession, msg: Any) -> None:
        if sess.state is State.ENDED:
            return
        sess.last_send = self.reactor.seconds()
        body = msg.body
        if not body:
            return  # empty SENDs (binding, keep-alive) carry nothing to page
        content_type = msg.content_type
        if not content_type:
            log.warn("gateway session {key}: SEND without Content-Type not paged", key=sess.key)
            self.stats.messages_failed += 1
            self._report(sess, msg, 415, "Content-Type missing")
            return
        self.stats.messages_to_sip += 1
        d = self.send_message(sess.from_uri, sess.to_uri, sess.ruri, body, content_type,
                              key=sess.key)
        d.addCallback(self._paged, sess, msg)

    def _paged(self, result: tuple[int, str], sess: GatewaySession, msg: Any) -> None:
        """The final answer to a MESSAGE made from a SEND: a failure goes back as a REPORT;
        end_to_end, a 2xx as the success REPORT the SEND asked for."""
        status, reason = result
        if status >= 300:  # already logged with the key by send_message
            self.stats.messages_failed += 1
            self._report(sess, msg, _SIP_TO_MSRP_STATUS.get(status, 400),
                         f"MESSAGE answered {status} {reason}")
        elif self.settings.end_to_end and getattr(msg, "success_report", "no") == "yes":
            report_success = getattr(msg, "report_success", None)
            if report_success is None:  # an MSRP layer that reported hop by hop already
                return
            try:
                report_success()
            except Exception as e:  # noqa: BLE001 - the session may be gone by now
                log.warn("gateway session {key}: success REPORT not sent: {error}",
                         key=sess.key, error=str(e))

    def _report(self, sess: GatewaySession, msg: Any, code: int, comment: str) -> None:
        if getattr(msg, "failure_report", "yes") not in ("yes", "partial"):
            return
        try:
            msg.report_failure(code, comment)
        except Exception as e:  # noqa: BLE001 - the session may be gone by now
            log.warn("gateway session {key}: failure REPORT not sent: {error}",
                     key=sess.key, error=str(e))
