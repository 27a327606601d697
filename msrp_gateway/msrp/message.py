"""MSRP frames (RFC 4975 s.7, s.9): records, a serializer and an incremental parser.

The pieces live in `grammar` (error type, bounds, value rules), `records` (headers,
requests, responses), `serializer` and `parser`; this module is the one to import them
from. Sans-IO: nothing here touches a socket or a clock.
"""

from __future__ import annotations

from .grammar import (
    DEFAULT_LIMITS,
    ByteRange,
    Limits,
    MSRPParseError,
    ReportStatus,
    new_ident,
    parse_byte_range,
    parse_report_status,
)
from .parser import FrameParser, parse_frames
from .records import HeadersArg, MSRPFrame, MSRPHeaders, MSRPRequest, MSRPResponse

__all__ = [
    "ByteRange",
    "DEFAULT_LIMITS",
    "FrameParser",
    "HeadersArg",
    "Limits",
    "MSRPFrame",
    "MSRPHeaders",
    "MSRPParseError",
    "MSRPRequest",
    "MSRPResponse",
    "ReportStatus",
    "new_ident",
    "parse_byte_range",
    "parse_frames",
    "parse_report_status",
]
