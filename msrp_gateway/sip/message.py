"""SIP requests and responses on bytes (RFC 3261 s.7, s.18.3, s.20), sans-IO.

The one import for the rest of the code: header fields live in ``headers``, message records
and ``make_response`` in ``records``, parsing and stream framing in ``parser``; every public
name is re-exported here. The header block is decoded and split once; typed views (Via,
CSeq, tags) are parsed only when asked. Everything a peer controls is bounded by
``Limits``; every failure is a ``SIPParseError`` carrying the status the peer should get.
"""

from __future__ import annotations

from .headers import COMPACT_FORMS, Headers, Via, parse_via, split_list
from .parser import DEFAULT_LIMITS, Limits, StreamParser, parse_message
from .records import (
    MAX_CSEQ,
    REASON_PHRASES,
    SIP_VERSION,
    SIPMessage,
    SIPRequest,
    SIPResponse,
    make_response,
    reason_phrase,
)
from .uri import SIPParseError

__all__ = [
    "SIPParseError",
    "Limits",
    "DEFAULT_LIMITS",
    "Headers",
    "SIPRequest",
    "SIPResponse",
    "SIPMessage",
    "Via",
    "parse_via",
    "parse_message",
    "StreamParser",
    "make_response",
    "reason_phrase",
    "COMPACT_FORMS",
    "REASON_PHRASES",
    "MAX_CSEQ",
    "SIP_VERSION",
    "split_list",
]
