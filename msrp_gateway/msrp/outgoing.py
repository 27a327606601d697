"""One outgoing MSRP message: its chunks, its transactions in flight and its result.

Sans-IO apart from the Deferred that carries the final status; `link.LinkCore` decides when
each chunk goes out and feeds the responses back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

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
                 failure_report: str, success_report: str, chunk_size: int, *,
                 new_tid: Callable[[], str] = new_id, path_head: bytes | None = None) -> None:
        """`new_tid` gives transaction ids unique on the connection (the link's);
        `path_head` is the session's To-Path/From-Path lines, built once (see
        `chunks.path_head`). The Message-ID stays unguessable (`secrets`)."""
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
            new_transaction_id=new_tid, path_head=path_head)

    def next_frame(self) -> tuple[str, bytes] | None:
        """(transaction id, wire bytes) of the next chunk; None once all are out."""
        chunker = self._chunker
        frame = chunker.next_wire()
        if frame is None or chunker.done:
            self.written_all = True
        return frame

    def abort_frame(self) -> bytes | None:
        """A bodiless `#` chunk telling the peer to drop what it has, if chunks remain."""
        if self.written_all or self._chunker.offset == 0:
            return None
        req = self._chunker.abort()
        if req is None:
            return None
        self.written_all = True
        try:
            return self._chunker._serialize_checked(req)[1]
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
