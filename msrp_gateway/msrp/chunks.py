"""Outgoing chunking and incoming reassembly of MSRP messages (RFC 4975 s.5.1, s.7.1.1).

Sans-IO: `Chunker` hands out one SEND at a time so the session can interleave other
messages between chunks; `Reassembler` takes chunks in any order and says when a message
is whole, refused (413/400) or abandoned. Time only enters through the `now` arguments.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence

from .grammar import (
    _END_MARK,
    _IDENT_OUT_RE,
    _IDENT_STR_IN_RE,
    _REPORT_VALUES,
    _check_path,
    _check_text,
)
from .message import ByteRange, MSRPHeaders, MSRPParseError, MSRPRequest, new_ident

__all__ = [
    "Abandoned",
    "AssembledMessage",
    "BUDGET_EXHAUSTED",
    "Chunker",
    "DEFAULT_CHUNK_SIZE",
    "Reassembler",
    "ReassemblyBudget",
    "ReassemblyError",
]

#: Bytes of body per SEND by default: small enough that a big message does not hold a
#: shared connection for long before another message's chunk can go.
DEFAULT_CHUNK_SIZE = 2048
#: The reason of a 413 for the stack-wide reassembly budget (see `ReassemblyBudget`).
BUDGET_EXHAUSTED = "reassembly memory budget exhausted"


def _path_text(path: Sequence[str] | str) -> str:
    return path if isinstance(path, str) else " ".join(path)


def path_head(to_path: Sequence[str] | str, from_path: Sequence[str] | str) -> bytes:
    """The `To-Path`/`From-Path` lines of every frame a session sends, checked once.

    A session builds them when its paths are set and hands them to each `Chunker`, which
    then writes them as they are (ValueError for a path s.9 forbids).
    """
    lines = []
    for name, value in (("To-Path", _path_text(to_path)), ("From-Path", _path_text(from_path))):
        _check_text(name, value)
        try:
            _check_path(name, value)
        except MSRPParseError as e:
            raise ValueError(e.reason) from None
        lines.append(f"{name}: {value}\r\n")
    return "".join(lines).encode("utf-8")


def _wire_contains_end_line(body: bytes, end_line: bytes) -> bool:
    """Would a parser see `end_line` + flag + CRLF inside this body (or ending it early)?"""
    framed = b"\r\n" + body + b"\r\n"
    return any(b"\r\n" + end_line + f + b"\r\n" in framed for f in (b"+", b"$", b"#"))


class Chunker:
    """One outgoing message as a lazy series of SEND requests (`+` ... `$`, or `#`).

    Each chunk gets a fresh transaction id from `new_transaction_id`, and a Byte-Range
    `start-end/total`. A body no larger than `chunk_size` goes as one SEND. An empty body
    goes as one SEND with no body (and so no Content-Type, as RFC 4975 s.7.1 requires).
    """

    def __init__(
        self,
        body: bytes,
        *,
        message_id: str,
        to_path: Sequence[str] | str,
        from_path: Sequence[str] | str,
        content_type: str | None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        failure_report: str | None = None,
        success_report: str | None = None,
        extra_headers: Iterable[tuple[str, str]] = (),
        new_transaction_id: Callable[[], str] = new_ident,
        path_head: bytes | None = None,
    ) -> None:
        if chunk_size < 1:
            raise ValueError("MSRP chunk_size must be a positive number of bytes")
        if body and not content_type:
            raise ValueError("an MSRP message with a body needs a content type")
        self.body = body
        self.message_id = message_id
        self.chunk_size = chunk_size
        self.content_type = content_type
        self._to_path = _path_text(to_path)
        self._from_path = _path_text(from_path)
        self._failure_report = failure_report
        self._success_report = success_report
        self._extra = list(extra_headers)
        self._new_tid = new_transaction_id
        self._offset = 0
        self._started = False
        self._finished = False
        self._path_head = path_head
        self._wire: tuple[bytes, bytes] | None = None  # (head lines, Content-Type block)

    @property
    def total(self) -> int:
        return len(self.body)

    @property
    def offset(self) -> int:
        """Bytes already handed out in chunks."""
        return self._offset

    @property
    def done(self) -> bool:
        """True once the last chunk (`$`) or an abort (`#`) has been handed out."""
        return self._finished

    def _request(self, start: int, data: bytes, flag: str) -> MSRPRequest:
        h = MSRPHeaders()
        h.add("To-Path", self._to_path)
        h.add("From-Path", self._from_path)
        h.add("Message-ID", self.message_id)
        if self._success_report is not None:
            h.add("Success-Report", self._success_report)
        if self._failure_report is not None:
            h.add("Failure-Report", self._failure_report)
        for name, value in self._extra:
            h.add(name, value)
        h.add("Byte-Range", str(ByteRange(start + 1, start + len(data), self.total)))
        if data and self.content_type is not None:
            h.add("Content-Type", self.content_type)
        return MSRPRequest(self._new_tid(), "SEND", h, data, flag)

    def next_chunk(self) -> MSRPRequest | None:
        """The next SEND, or None when the message is done."""
        if self._finished:
            return None
        if self._started and self._offset >= self.total:
            self._finished = True
            return None
        self._started = True
        start = self._offset
        end = min(start + self.chunk_size, self.total)
        self._offset = end
        flag = "$" if end >= self.total else "+"
        if flag == "$":
            self._finished = True
        return self._request(start, self.body[start:end], flag)

    def next_wire(self) -> tuple[str, bytes] | None:
        """`next_chunk()` already serialized: (transaction id, wire bytes), or None.

        The hot path of every SEND: the message's caller-supplied parts (Message-ID,
        content type, report flags, paths unless the session gave `path_head`) are checked
        once, on the first chunk; each chunk then only adds its Byte-Range, body and
        end-line, written exactly as `MSRPRequest.to_bytes()` would. Raises ValueError for
        what s.9 forbids (as `to_bytes()`); a body holding the end-line of its transaction
        id gets another id. Messages with `extra_headers` take the checked slow path.
        """
        if self._extra:
            req = self.next_chunk()
            if req is None:
                return None
            return self._serialize_checked(req)
        wire = self._wire
        if wire is None:
            wire = self._wire = self._build_wire()
        if self._finished:
            return None
        if self._started and self._offset >= self.total:
            self._finished = True
            return None
        self._started = True
        start = self._offset
        total = len(self.body)
        end = min(start + self.chunk_size, total)
        self._offset = end
        if end >= total:
            self._finished = True
            flag = b"$"
        else:
            flag = b"+"
        data = self.body[start:end] if (start or end < total) else self.body
        head, ct = wire
        rng = f"Byte-Range: {start + 1}-{end}/{total}\r\n".encode("ascii")
        for _ in range(4):
            tid = self._new_tid()
            if not _IDENT_OUT_RE.match(tid):
                raise ValueError(f"MSRP transaction id {tid!r} is not a valid ident")
            tid_b = tid.encode("ascii")
            end_line = _END_MARK + tid_b
            if data and end_line in data and _wire_contains_end_line(data, end_line):
                continue  # pick another id (RFC 4975 s.7.1: the body must not hold it)
            if data and ct:
                return tid, b"".join((b"MSRP ", tid_b, b" SEND\r\n", head, rng, ct, data,
                                      b"\r\n", end_line, flag, b"\r\n"))
            return tid, b"".join((b"MSRP ", tid_b, b" SEND\r\n", head, rng, end_line, flag,
                                  b"\r\n"))
        raise ValueError("MSRP body contains its own end-line; pick another id")

    def _build_wire(self) -> tuple[bytes, bytes]:
        """Check the message's own parts once; the header lines every chunk repeats."""
        if not _IDENT_STR_IN_RE.match(self.message_id):
            raise ValueError(f"Message-ID {self.message_id!r} is not an ident")
        head = self._path_head
        if head is None:
            head = path_head(self._to_path, self._from_path)
        lines = [f"Message-ID: {self.message_id}\r\n"]
        for name, value in (("Success-Report", self._success_report),
                            ("Failure-Report", self._failure_report)):
            if value is not None:
                if value.lower() not in _REPORT_VALUES[name]:
                    raise ValueError(f"{name}: {value!r} is not allowed")
                lines.append(f"{name}: {value}\r\n")
        ct = b""
        if self.content_type is not None:
            _check_text("Content-Type", self.content_type)
            if "/" not in self.content_type:
                raise ValueError(f"Content-Type {self.content_type!r} is not a media type")
            ct = f"Content-Type: {self.content_type}\r\n\r\n".encode("utf-8")
        return head + "".join(lines).encode("utf-8"), ct

    def _serialize_checked(self, req: MSRPRequest) -> tuple[str, bytes]:
        for _ in range(3):
            try:
                return req.transaction_id, req.to_bytes()
            except ValueError as e:
                if "end-line" not in str(e):
                    raise
                req.transaction_id = self._new_tid()
        return req.transaction_id, req.to_bytes()

    def abort(self) -> MSRPRequest | None:
        """A bodiless `#` SEND telling the peer to drop what it has (None if already done)."""
        if self._finished:
            return None
        self._finished = True
        return self._request(self._offset, b"", "#")

    def __iter__(self) -> Iterator[MSRPRequest]:
        while (chunk := self.next_chunk()) is not None:
            yield chunk


class ReassemblyError(Exception):
    """A chunk the session must refuse: answer its SEND with `code` (413 or 400).

    The message's partial state is already dropped; later chunks of it get 413 too.
    """

    def __init__(self, code: int, reason: str, message_id: str | None) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.message_id = message_id


@dataclass(slots=True)
class AssembledMessage:
    """A whole message. `request` is the chunk that completed it (its paths serve REPORTs)."""

    message_id: str
    content_type: str | None
    body: bytes
    failure_report: str
    success_report: str
    request: MSRPRequest


@dataclass(slots=True)
class Abandoned:
    """An incomplete message given up: `reason` "aborted" (peer sent `#`), "timeout", "closed"."""

    message_id: str
    reason: str
    received: int
    total: int | None
    content_type: str | None
    failure_report: str
    success_report: str
    request: MSRPRequest


class ReassemblyBudget:
    """Bytes held in open reassemblies by every session of a stack, under one bound.

    Per-session bounds (open messages x message size) do not add up to a safe total with
    many sessions; this one does. `take(n)` says whether `n` more bytes fit (and counts
    them), `give_back(n)` returns them; `refused` counts chunks turned away for it.
    """

    __slots__ = ("limit", "used", "refused", "_warned")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("the reassembly budget must be positive")
        self.limit = limit
        self.used = 0
        self.refused = 0
        self._warned = float("-inf")

    def may_log(self, now: float, every: float = 60.0) -> bool:
        """At most one warning per `every` seconds about refusals (a flood stays quiet)."""
        if now - self._warned < every:
            return False
        self._warned = now
        return True

    def take(self, n: int) -> bool:
        if self.used + n > self.limit:
            self.refused += 1
            return False
        self.used += n
        return True

    def give_back(self, n: int) -> None:
        self.used = max(0, self.used - n)


@dataclass(slots=True)
class _Partial:
    """One message being reassembled: only bytes not already held are stored.

    Storage grows with the bytes the peer actually sent (never with a declared total),
    and duplicates cost nothing.
    """

    pieces: dict[int, bytes]  # offset -> bytes, disjoint
    covered: list[int]  # flat sorted [s0, e0, s1, e1, ...] of disjoint half-open ranges
    total: int | None
    content_type: str | None
    failure_report: str
    success_report: str
    last_request: MSRPRequest
    last_seen: float
    chunks: int = 0
    received: int = 0
    extent: int = 0  # highest offset held (end of the last range)

    def add(self, start: int, data: bytes) -> None:
        end = start + len(data)
        cov = self.covered
        # Store the parts of [start, end) that no earlier chunk covered.
        k = bisect.bisect_right(cov, start)
        if k % 2:  # start falls inside a held range
            pos = cov[k]
            k += 1
        else:
            pos = start
        while pos < end:
            nxt = cov[k] if k < len(cov) else end
            if nxt >= end:
                self.pieces[pos] = data[pos - start :]
                self.received += end - pos
                break
            if nxt > pos:
                self.pieces[pos] = data[pos - start : nxt - start]
                self.received += nxt - pos
            pos = cov[k + 1]
            k += 2
        # Merge [start, end) into the interval list.
        lo = bisect.bisect_left(cov, start)
        hi = bisect.bisect_right(cov, end)
        new_start = start if lo % 2 == 0 else cov[lo - 1]
        new_end = end if hi % 2 == 0 else cov[hi]
        lo_i = lo if lo % 2 == 0 else lo - 1
        hi_i = hi if hi % 2 == 0 else hi + 1
        cov[lo_i:hi_i] = [new_start, new_end]
        self.extent = cov[-1]

    def uncovered(self, start: int, end: int) -> int:
        """How many bytes of [start, end) no held range covers: what `add` would store."""
        cov = self.covered
        n = end - start
        k = bisect.bisect_right(cov, start)
        i = k - 1 if k % 2 else k
        while i < len(cov) and cov[i] < end:
            n -= max(0, min(end, cov[i + 1]) - max(start, cov[i]))
            i += 2
        return n

    def complete(self) -> bool:
        return self.total is not None and (
            self.total == 0 or self.covered == [0, self.total]
        )

    def join(self) -> bytes:
        pieces = self.pieces
        return b"".join(pieces[k] for k in sorted(pieces))


class Reassembler:
    """Incoming chunks -> whole messages, per Message-ID, in any order; bounded.

    `receive(request, now)` returns an `AssembledMessage` when the message is whole, an
    `Abandoned` when the peer aborted it (`#`), else None (wait for more); it raises
    `ReassemblyError` (413 over `max_message_size`, too many open messages or chunks;
    400 for inconsistent ranges). `expire(now)` returns the messages idle longer than
    `timeout` seconds, which are dropped: the caller reports them, nothing is kept.
    Duplicate and overlapping chunks are accepted (bytes already held are kept). Memory
    follows the bytes received, never a declared total. With a shared `budget`, a chunk
    whose new bytes would take the stack's total past it gets 413 and its message is
    dropped (its bytes given back), as for any other bound.
    """

    def __init__(
        self,
        *,
        max_message_size: int = 16 * 1024 * 1024,
        max_open: int = 16,
        max_chunks: int = 65536,
        timeout: float = 60.0,
        remember: int = 256,
        budget: ReassemblyBudget | None = None,
    ) -> None:
        if max_message_size < 1 or max_open < 1 or max_chunks < 1 or timeout <= 0:
            raise ValueError("Reassembler bounds must be positive")
        self.max_message_size = max_message_size
        self.max_open = max_open
        self.max_chunks = max_chunks
        self.timeout = timeout
        self._open: dict[str, _Partial] = {}
        self._refused: OrderedDict[str, None] = OrderedDict()
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._remember = remember
        self.budget = budget

    @property
    def open_count(self) -> int:
        return len(self._open)

    def pending(self) -> list[str]:
        """Message-IDs being reassembled."""
        return list(self._open)

    def _note(self, table: OrderedDict[str, None], mid: str) -> None:
        table[mid] = None
        table.move_to_end(mid)
        while len(table) > self._remember:
            table.popitem(last=False)

    def _drop(self, mid: str) -> _Partial | None:
        """Forget an open message and give its bytes back to the budget."""
        part = self._open.pop(mid, None)
        if part is not None and self.budget is not None:
            self.budget.give_back(part.received)
        return part

    def _refuse(self, code: int, reason: str, mid: str) -> ReassemblyError:
        self._drop(mid)
        self._note(self._refused, mid)
        return ReassemblyError(code, reason, mid)

    def receive(self, request: MSRPRequest, now: float) -> AssembledMessage | Abandoned | None:
        mid = request.message_id
        if mid is None:
            raise ReassemblyError(400, "SEND without Message-ID", None)
        if mid in self._refused:
            raise ReassemblyError(413, "message already refused", mid)
        try:
            br = request.byte_range
        except MSRPParseError as e:  # a hand-built request; parsed ones are checked
            raise ReassemblyError(400, e.reason, mid) from None
        body = request.body
        start = br.start - 1
        end = start + len(body)
        if br.end is not None and len(body) > br.end - start:
            raise self._refuse(400, "chunk body longer than its Byte-Range", mid)
        total = br.total
        if total is None and request.flag == "$":
            total = end  # the last chunk of a message of unknown length fixes it
        limit = self.max_message_size
        if (total is not None and total > limit) or end > limit:
            raise self._refuse(413, f"message larger than {limit} bytes", mid)
        if total is not None and end > total:
            raise self._refuse(400, "chunk extends past the message total", mid)

        part = self._open.get(mid)
        if part is None:
            whole = start == 0 and request.flag == "$" and (total is None or total == end)
            if mid in self._finished and not whole:
                return None  # a late resend of a message already delivered or dropped
            if request.flag == "#":
                return Abandoned(mid, "aborted", len(body), total, request.content_type,
                                 request.failure_report, request.success_report, request)
            if whole:
                # The common case: a whole message in one chunk, no copy.
                return AssembledMessage(mid, request.content_type, body,
                                        request.failure_report, request.success_report,
                                        request)
            if len(self._open) >= self.max_open:
                raise ReassemblyError(413, "too many messages being reassembled", mid)
            part = _Partial({}, [], total, request.content_type,
                            request.failure_report, request.success_report, request, now)
            self._open[mid] = part
        else:
            if total is not None and part.total is not None and total != part.total:
                raise self._refuse(400, "chunks disagree on the message total", mid)
            if part.total is not None and end > part.total:
                raise self._refuse(400, "chunk extends past the message total", mid)
        if part.total is None and total is not None:
            if part.extent > total:
                raise self._refuse(400, "earlier chunks extend past the message total", mid)
            part.total = total
        part.chunks += 1
        if part.chunks > self.max_chunks:
            raise self._refuse(413, f"message in more than {self.max_chunks} chunks", mid)
        if part.content_type is None:
            part.content_type = request.content_type
        part.last_request = request
        part.last_seen = now
        if body:
            if self.budget is not None and not self.budget.take(part.uncovered(start, end)):
                raise self._refuse(413, BUDGET_EXHAUSTED, mid)
            part.add(start, body)
        if request.flag == "#":
            self._drop(mid)
            self._note(self._finished, mid)
            return Abandoned(mid, "aborted", part.received, part.total, part.content_type,
                             part.failure_report, part.success_report, request)
        if part.complete():
            self._drop(mid)
            self._note(self._finished, mid)
            assert part.total is not None
            data = part.join()
            return AssembledMessage(mid, part.content_type, data, part.failure_report,
                                    part.success_report, request)
        return None

    def expire(self, now: float) -> list[Abandoned]:
        """Drop and return every message with no chunk for `timeout` seconds."""
        gone: list[Abandoned] = []
        for mid, part in list(self._open.items()):
            if now - part.last_seen >= self.timeout:
                self._drop(mid)
                self._note(self._finished, mid)
                gone.append(Abandoned(mid, "timeout", part.received, part.total,
                                      part.content_type, part.failure_report,
                                      part.success_report, part.last_request))
        return gone

    def discard_all(self) -> list[Abandoned]:
        """Drop every open message (session closing) and return them to be reported."""
        gone = [
            Abandoned(mid, "closed", p.received, p.total, p.content_type, p.failure_report,
                      p.success_report, p.last_request)
            for mid, p in self._open.items()
        ]
        if self.budget is not None:
            self.budget.give_back(sum(p.received for p in self._open.values()))
        self._open.clear()
        return gone
