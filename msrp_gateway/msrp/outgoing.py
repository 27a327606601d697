"""One outgoing MSRP message: its chunks, its transactions in flight and its result.

Sans-IO apart from the Deferred that carries the final status; `link.LinkCore` decides when
each chunk goes out and feeds the responses back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet import defer

from .chunks import Chunker
from .message import MSRPRequest
from .rules import MSRPSendError, Timer, new_id

if TYPE_CHECKING:
    from .session import MSRPSession

__all__ = ["OutgoingMessage"]


class OutgoingMessage:
    """One SEND message: its chunks, its transactions in flight and its result."""

    __slots__ = ("session", "message_id", "size", "failure_report", "success_report",
                 "deferred", "outstanding", "_chunker", "written_all", "done")

    def __init__(self, session: MSRPSession, content_type: str | None, body: bytes,
                 failure_report: str, success_report: str, chunk_size: int) -> None:
        self.session = session
        self.message_id = new_id()
        self.size = len(body)
        self.failure_report = failure_report
        self.success_report = success_report
        self.deferred: defer.Deferred[int] = defer.Deferred()
        self.outstanding: dict[str, Timer | None] = {}
        self.written_all = False
        self.done = False
        self._chunker = Chunker(
            body, message_id=self.message_id, to_path=session.send_path,
            from_path=session.local_uri, content_type=content_type, chunk_size=chunk_size,
            failure_report=None if failure_report == "yes" else failure_report,
            success_report=None if success_report == "no" else success_report,
            new_transaction_id=new_id)

    def next_frame(self) -> tuple[str, bytes] | None:
        """(transaction id, wire bytes) of the next chunk; None once all are out."""
        req = self._chunker.next_chunk()
        if req is None:
            self.written_all = True
            return None
        return _serialize_fresh(req)

    def abort_frame(self) -> bytes | None:
        """A bodiless `#` chunk telling the peer to drop what it has, if chunks remain."""
        if self.written_all or self._chunker.offset == 0:
            return None
        req = self._chunker.abort()
        if req is None:
            return None
        self.written_all = True
        try:
            return _serialize_fresh(req)[1]
        except ValueError:
            return None

    def fail(self, code: int, comment: str | None) -> None:
        if self.done:
            return
        self.done = True
        for call in self.outstanding.values():
            if call is not None and call.active():
                call.cancel()
        self.outstanding.clear()
        self.deferred.errback(MSRPSendError(code, comment))

    def maybe_succeed(self) -> None:
        if not self.done and self.written_all and not self.outstanding:
            self.done = True
            self.deferred.callback(200)


def _serialize_fresh(req: MSRPRequest) -> tuple[str, bytes]:
    """Serialize, picking another transaction id in the (rare) case the body holds ours.

    Raises ValueError for anything else RFC 4975 s.9 forbids (e.g. a bad content type).
    """
    for _ in range(3):
        try:
            return req.transaction_id, req.to_bytes()
        except ValueError as e:
            if "end-line" not in str(e):
                raise
            req.transaction_id = new_id()
    return req.transaction_id, req.to_bytes()

