"""MSRP serializer (RFC 4975 s.9): a record's fields to wire bytes, refusing what s.9 forbids.

Sans-IO. Raises `ValueError` (never writes) for an invalid id, method, status, header,
a body without Content-Type, or a body that holds its own end-line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .grammar import (
    _END_MARK,
    _FLAGS,
    _HNAME_RE,
    _IDENT_OUT_RE,
    _IDENT_STR_IN_RE,
    _METHOD_RE,
    _REPORT_VALUES,
    _SINGLE,
    MSRPParseError,
    _check_path,
    _check_text,
    parse_byte_range,
    parse_report_status,
)

if TYPE_CHECKING:
    from .records import MSRPHeaders

__all__ = ["serialize"]

# Header order on the wire (s.9): To-Path, From-Path, other headers, MIME headers,
# Content-Type last (it precedes the blank line).
_MIME_PREFIX = "content-"


def serialize(
    tid: str, start: str, headers: MSRPHeaders, body: bytes, flag: str, is_request: bool
) -> bytes:
    # Our own requests get RFC-size ids (4-32); a response echoes the peer's id, which
    # the parser accepted (1-64), or the peer would never hear back.
    if not (_IDENT_OUT_RE if is_request else _IDENT_STR_IN_RE).match(tid):
        raise ValueError(f"MSRP transaction id {tid!r} is not a valid ident")
    if is_request:
        if not _METHOD_RE.match(start):
            raise ValueError(f"MSRP method {start!r} must be upper-case letters")
    else:
        code, _, comment = start.partition(" ")
        if len(code) != 3 or not (code.isascii() and code.isdigit()):
            raise ValueError(f"MSRP status {code!r} must be three digits")
        _check_text("comment", comment)
    if flag not in ("$", "+", "#") or len(flag) != 1:
        raise ValueError(f"MSRP continuation flag {flag!r} must be one of + $ #")
    to_path = headers.get("To-Path")
    from_path = headers.get("From-Path")
    if not to_path or not from_path:
        raise ValueError("MSRP frames need To-Path and From-Path headers")
    content_type = headers.get("Content-Type")
    if not is_request and (body or content_type is not None):
        raise ValueError("MSRP responses carry no body")
    if body and content_type is None:
        raise ValueError("an MSRP body needs a Content-Type header")
    plain: list[str] = [f"To-Path: {to_path}", f"From-Path: {from_path}"]
    mime: list[str] = []
    seen: set[str] = set()
    for name, key, value in headers._items:
        if not _HNAME_RE.match(name):
            raise ValueError(f"bad MSRP header name {name!r}")
        _check_text(name, value)
        if key in _SINGLE:
            if key in seen:
                raise ValueError(f"MSRP header {name} given twice")
            seen.add(key)
            _check_value(name, key, value)
            if key in ("to-path", "from-path", "content-type"):
                continue
        (mime if key.startswith(_MIME_PREFIX) else plain).append(f"{name}: {value}")
    if content_type is not None:
        mime.append(f"Content-Type: {content_type}")
    end_line = _END_MARK + tid.encode("ascii")
    parts = [f"MSRP {tid} {start}\r\n".encode("utf-8"), "\r\n".join(plain).encode("utf-8"), b"\r\n"]
    if content_type is not None:
        if end_line in body and _contains_end_line(body, end_line):
            raise ValueError("MSRP body contains its own end-line; pick another id")
        parts += ["\r\n".join(mime).encode("utf-8"), b"\r\n\r\n", body, b"\r\n"]
    parts += [end_line, flag.encode("ascii"), b"\r\n"]
    return b"".join(parts)


def _check_value(name: str, key: str, value: str) -> None:
    """The headers s.9 gives a syntax must have it on the way out (ValueError if not)."""
    try:
        if key in ("to-path", "from-path"):
            _check_path(name, value)
        elif key == "message-id":
            if not _IDENT_STR_IN_RE.match(value):
                raise ValueError(f"Message-ID {value!r} is not an ident")
        elif key == "byte-range":
            parse_byte_range(value)
        elif key == "status":
            parse_report_status(value)
        elif key in ("success-report", "failure-report"):
            allowed = _REPORT_VALUES["Success-Report" if key[0] == "s" else "Failure-Report"]
            if value.lower() not in allowed:  # ABNF literals are case-insensitive
                raise ValueError(f"{name}: {value!r} is not allowed")
        elif key == "content-type" and "/" not in value:
            raise ValueError(f"Content-Type {value!r} is not a media type")
    except MSRPParseError as e:
        raise ValueError(e.reason) from None


def _contains_end_line(body: bytes, end_line: bytes) -> bool:
    """Would a parser see `end_line` + flag + CRLF inside (or closing early) this body?"""
    framed = b"\r\n" + body + b"\r\n"
    return any(b"\r\n" + end_line + bytes((f,)) + b"\r\n" in framed for f in _FLAGS)

