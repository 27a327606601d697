"""Incremental MSRP frame parser (RFC 4975 s.7, s.9), sans-IO.

`FrameParser.feed(bytes)` returns complete frames as they arrive, whatever the piece
boundaries; nothing here touches a socket or a clock (the caller passes `now` if it wants
`pending_since` to enforce a time bound on a frame that never ends).
"""

from __future__ import annotations

from .grammar import (
    _BLOCK_BAD_RE,
    _END_MARK,
    _FLAGS,
    _HNAME_RE,
    _IDENT_IN_RE,
    _IDENT_STR_IN_RE,
    _KNOWN_LOWER,
    _METHOD_RE,
    _REPORT_VALUES,
    _SINGLE,
    _STATUS_START_RE,
    _UTF8TEXT_BAD_RE,
    DEFAULT_LIMITS,
    Limits,
    MSRPParseError,
    _check_path,
    byte_range_cached,
    parse_report_status,
)
from .records import MSRPHeaders, MSRPRequest, MSRPResponse

__all__ = ["FrameParser", "parse_frames"]

_S_START, _S_HEADERS, _S_BODY, _S_SKIP, _S_DEAD = range(5)
_REPORT_CHECKS = tuple((name, name.lower(), allowed) for name, allowed in _REPORT_VALUES.items())


class FrameParser:
    """Incremental MSRP frame parser: feed pieces, get frames and recoverable errors.

    Work is linear in the bytes fed: each search resumes where the last one stopped.
    A frame that breaks a bound or the grammar but whose end-line can still be found
    comes out as an `MSRPParseError` event carrying its transaction id (answer 400, or
    413 for a body over `max_body_size`, which is skipped without being buffered).
    Lost framing (no `MSRP <id>` start line) raises `MSRPParseError`; the parser is
    then dead and raises again on every feed: close the connection.
    """

    __slots__ = (
        "limits",
        "_buf",
        "_state",
        "_scan",
        "_tid",
        "_tid_b",
        "_end_pat",
        "_start_line",
        "_line_start",
        "_header_block",
        "_body_start",
        "_error",
        "_skipped",
        "_pending_since",
        "_fatal",
    )

    def __init__(self, limits: Limits | None = DEFAULT_LIMITS) -> None:
        self.limits = DEFAULT_LIMITS if limits is None else limits
        self._buf = bytearray()
        self._state = _S_START
        self._scan = 0
        self._tid = ""
        self._tid_b = b""
        self._end_pat = b""
        self._start_line = b""
        self._line_start = 0
        self._header_block = b""
        self._body_start = 0
        self._error: MSRPParseError | None = None
        self._skipped = 0
        self._pending_since: float | None = None
        self._fatal: MSRPParseError | None = None

    # -- what the caller may watch to bound time and memory ----------------------------

    @property
    def pending_bytes(self) -> int:
        """Bytes of the current incomplete frame received so far (skipped ones included)."""
        return len(self._buf) + self._skipped

    @property
    def pending_since(self) -> float | None:
        """The `now` given to the feed that began the incomplete frame; None when idle."""
        return self._pending_since

    @property
    def buffered(self) -> int:
        """Bytes held in memory right now (bounded by the limits)."""
        return len(self._buf)

    # -- feeding ------------------------------------------------------------------------

    def feed(
        self, data: bytes, now: float | None = None
    ) -> list[MSRPRequest | MSRPResponse | MSRPParseError]:
        if self._fatal is not None:
            raise self._fatal
        if data:
            self._buf += data
        out: list[MSRPRequest | MSRPResponse | MSRPParseError] = []
        try:
            self._run(out)
        except MSRPParseError as e:
            self._fatal = e
            self._state = _S_DEAD
            self._buf = bytearray()
            raise
        if self._buf or self._state != _S_START:
            if self._pending_since is None:
                self._pending_since = now
        else:
            self._pending_since = None
        return out

    def _run(self, out: list[MSRPRequest | MSRPResponse | MSRPParseError]) -> None:
        while True:
            state = self._state
            if state == _S_START:
                if not self._parse_start():
                    return
            elif state == _S_HEADERS:
                if not self._parse_headers(out):
                    return
            elif state == _S_BODY:
                if not self._parse_body(out):
                    return
            elif state == _S_SKIP:
                if not self._skip(out):
                    return
            else:  # pragma: no cover - feed() refuses a dead parser
                return

    def _consume(self, end: int) -> None:
        del self._buf[:end]
        self._scan = 0
        self._state = _S_START
        self._pending_since = None
        self._skipped = 0

    def _parse_start(self) -> bool:
        buf = self._buf
        # Tolerate blank lines between frames (some stacks send CRLF keep-alives).
        while buf[:2] == b"\r\n":
            del buf[:2]
        if not buf:
            return False
        if buf[:1] == b"\r" and len(buf) == 1:
            return False
        head = bytes(buf[:5])
        if not b"MSRP ".startswith(head[: len(head)]):
            raise MSRPParseError("stream does not start with an MSRP frame; framing lost")
        i = buf.find(b"\r\n", self._scan)
        if i < 0:
            if len(buf) > self.limits.max_line_length:
                raise MSRPParseError("MSRP start line too long; framing lost")
            self._scan = max(0, len(buf) - 1)
            return False
        if i > self.limits.max_line_length:
            raise MSRPParseError("MSRP start line too long; framing lost")
        line = bytes(buf[:i])
        parts = line.split(b" ", 2)
        if len(parts) < 3 or parts[0] != b"MSRP":
            # Without a transaction id there is no end-line to look for.
            raise MSRPParseError("malformed MSRP start line; framing lost")
        tid_b = parts[1]
        if not _IDENT_IN_RE.match(tid_b):
            raise MSRPParseError("malformed MSRP transaction id; framing lost")
        self._tid_b = tid_b
        self._tid = tid_b.decode("ascii")
        self._end_pat = b"\r\n" + _END_MARK + tid_b
        self._start_line = parts[2]
        self._error = None
        self._header_block = b""
        self._line_start = i + 2
        self._scan = i  # the start line's CRLF may begin the end-line (no headers)
        self._state = _S_HEADERS
        return True

    def _fail(self, reason: str, code: int = 400) -> None:
        if self._error is None:
            self._error = MSRPParseError(
                reason, code, self._tid, response=self._start_line[:1].isdigit()
            )

    def _annotate(self, err: MSRPParseError) -> MSRPParseError:
        """Give a frame-level error the frame's paths, so the 400 can be addressed."""
        err.transaction_id = self._tid
        err.response = self._start_line[:1].isdigit()
        for line in self._header_block.split(b"\r\n"):
            key = line[:10].lower()
            if key.startswith(b"to-path:"):
                err.to_path = line[8:].decode("utf-8", "replace").split()
            elif key.startswith(b"from-path:"):
                err.from_path = line[10:].decode("utf-8", "replace").split()
        return err

    def _enter_skip(self, keep_from: int) -> None:
        # Keep the CRLF before `keep_from` so an end-line right there is still found.
        cut = max(0, keep_from - 2)
        self._skipped += cut
        del self._buf[:cut]
        self._scan = 0
        self._state = _S_SKIP

    def _parse_headers(self, out: list[MSRPRequest | MSRPResponse | MSRPParseError]) -> bool:
        """Find where the header block ends: a blank line (body follows) or our end-line."""
        buf = self._buf
        first = self._line_start - 2  # the start line's own CRLF
        pos = max(self._scan, first)
        i, f = self._find_end(buf, pos)
        j = buf.find(b"\r\n\r\n", pos, i + 2 if i >= 0 else len(buf))
        if j >= 0:
            # A body follows; it ends at the first complete end-line after the blank line.
            self._header_block = bytes(buf[self._line_start : j]) if j > first else b""
            self._body_start = j + 4
            self._scan = j  # lets "\r\n\r\n-------id$" (empty body) match
            self._state = _S_BODY
            if j - self._line_start > self.limits.max_header_bytes:
                self._fail("MSRP header block too large")
            return True
        if i >= 0 and f >= 0:
            self._header_block = bytes(buf[self._line_start : i]) if i > first else b""
            if i - self._line_start > self.limits.max_header_bytes:
                self._fail("MSRP header block too large")
            out.append(self._finish(b"", chr(f), False))
            self._consume(i + len(self._end_pat) + 3)
            return True
        self._scan = i if i >= 0 else max(pos, len(buf) - len(self._end_pat))
        if len(buf) - self._line_start > self.limits.max_header_bytes:
            self._header_block = bytes(buf[self._line_start : self._line_start + 4096])
            self._fail("MSRP header block too large")
            self._enter_skip(self._scan + 2)
            return True
        return False

    def _find_end(self, buf: bytearray, pos: int) -> tuple[int, int]:
        """(index of CRLF-------id, flag byte) from `pos`; (-1, 0) if none, (i, -1) if partial."""
        pat = self._end_pat
        plen = len(pat)
        while True:
            i = buf.find(pat, pos)
            if i < 0:
                return -1, 0
            if len(buf) < i + plen + 3:
                return i, -1
            f = buf[i + plen]
            if f in _FLAGS and buf[i + plen + 1 : i + plen + 3] == b"\r\n":
                return i, f
            pos = i + 1

    def _parse_body(self, out: list[MSRPRequest | MSRPResponse | MSRPParseError]) -> bool:
        buf = self._buf
        i, f = self._find_end(buf, self._scan)
        if i >= 0 and f >= 0:
            if i - self._body_start > self.limits.max_body_size:
                self._fail(f"MSRP body larger than {self.limits.max_body_size} bytes", code=413)
                body = b""
            else:
                body = bytes(buf[self._body_start : i]) if i > self._body_start else b""
            out.append(self._finish(body, chr(f), True))
            self._consume(i + len(self._end_pat) + 3)
            return True
        if i >= 0:  # end-line candidate not complete yet
            self._scan = i
        else:
            self._scan = max(self._scan, len(buf) - len(self._end_pat) + 1)
        if len(buf) - self._body_start > self.limits.max_body_size:
            self._fail(
                f"MSRP body larger than {self.limits.max_body_size} bytes", code=413
            )
            self._enter_skip(self._scan + 2)
            return True
        return False

    def _skip(self, out: list[MSRPRequest | MSRPResponse | MSRPParseError]) -> bool:
        buf = self._buf
        i, f = self._find_end(buf, 0)
        if i >= 0 and f >= 0:
            assert self._error is not None
            out.append(self._annotate(self._error))
            self._consume(i + len(self._end_pat) + 3)
            return True
        keep_from = i if i >= 0 else max(0, len(buf) - len(self._end_pat) + 1)
        self._skipped += keep_from
        del buf[:keep_from]
        return False

    # -- building the frame -------------------------------------------------------------

    def _finish(
        self, body: bytes, flag: str, has_body: bool
    ) -> MSRPRequest | MSRPResponse | MSRPParseError:
        if self._error is not None:
            return self._annotate(self._error)
        try:
            return _build(self._tid, self._start_line, self._header_block, body, flag,
                          has_body, self.limits)
        except MSRPParseError as e:
            return self._annotate(e)



def _build(
    tid: str,
    start: bytes,
    raw_block: bytes,
    body: bytes,
    flag: str,
    has_body: bool,
    limits: Limits = DEFAULT_LIMITS,
) -> MSRPRequest | MSRPResponse:
    try:
        start_s = start.decode("utf-8")
        block = raw_block.decode("utf-8")
    except UnicodeDecodeError:
        raise MSRPParseError("MSRP start line or headers are not UTF-8") from None
    items: list[tuple[str, str, str]] = []
    seen: dict[str, str] = {}
    if block:
        lines = block.split("\r\n")
        if len(lines) > limits.max_headers:
            raise MSRPParseError("too many MSRP header lines")
        # One scan for control characters; bare CR or LF would end a line in other stacks.
        if _BLOCK_BAD_RE.search(block) or block.count("\r") != len(lines) - 1 or (
            block.count("\n") != len(lines) - 1
        ):
            raise MSRPParseError("control character in MSRP headers")
        # No line can be longer than the whole block: skip the per-line check then.
        max_line = limits.max_line_length if len(block) > limits.max_line_length else -1
        for line in lines:
            name, colon, value = line.partition(":")
            key = _KNOWN_LOWER.get(name)
            if key is None:
                if not colon or not _HNAME_RE.match(name):
                    raise MSRPParseError(f"malformed MSRP header line {line[:40]!r}")
                key = name.lower()
            elif not colon:
                raise MSRPParseError(f"malformed MSRP header line {line[:40]!r}")
            if max_line >= 0 and len(line) > max_line:
                raise MSRPParseError(f"MSRP header {name} too long")
            value = value.strip(" \t")
            if key in _SINGLE:
                if key in seen:
                    raise MSRPParseError(f"duplicate MSRP header {name}")
                seen[key] = value
            items.append((name, key, value))
    # What is checked here is kept on the headers: the session asks for it again.
    memo: dict[str, object] = {}
    for key, label in (("to-path", "To-Path"), ("from-path", "From-Path")):
        if key not in seen:
            raise MSRPParseError(f"missing {label}")
        _check_path(label, seen[key])
        memo[key] = tuple(seen[key].split())
    headers = MSRPHeaders._from_parsed(items, memo)
    if start_s[:1].isdigit() and _STATUS_START_RE.match(start_s):
        if has_body and (body or "content-type" in seen):
            raise MSRPParseError("an MSRP response carries no body")
        comment = start_s[4:] if len(start_s) > 3 else None
        if comment is not None and _UTF8TEXT_BAD_RE.search(comment):
            raise MSRPParseError("control character in response comment")
        return MSRPResponse(tid, int(start_s[:3]), comment, headers)
    if not _METHOD_RE.match(start_s):
        raise MSRPParseError(f"malformed MSRP method {start_s[:20]!r}")
    if start_s in ("SEND", "REPORT"):
        mid = seen.get("message-id")
        if mid is None:
            raise MSRPParseError(f"{start_s} without Message-ID")
        if not _IDENT_STR_IN_RE.match(mid):
            raise MSRPParseError("malformed Message-ID")
    br = seen.get("byte-range")
    if br is not None:
        memo["byte-range"] = byte_range_cached(br)
    st = seen.get("status")
    if st is not None:
        parse_report_status(st)
    if start_s == "REPORT" and st is None:
        raise MSRPParseError("REPORT without Status")
    for hname, key, allowed in _REPORT_CHECKS:
        v = seen.get(key)
        if v is not None and v.lower() not in allowed:
            raise MSRPParseError(f"{hname} must be one of {', '.join(allowed)}")
    return MSRPRequest(tid, start_s, headers, body, flag)


def parse_frames(data: bytes, limits: Limits = DEFAULT_LIMITS) -> list[MSRPRequest | MSRPResponse | MSRPParseError]:
    """Parse complete frames held in one buffer (tests, tools); trailing bytes must be none."""
    parser = FrameParser(limits)
    frames = parser.feed(data)
    if parser.pending_bytes:
        raise MSRPParseError("incomplete MSRP frame at end of data")
    return frames
