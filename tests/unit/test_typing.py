"""``mypy --strict`` holds on the sans-IO protocol cores (STYLE.md "Shape of the code").

The cores are what every layer trusts with hostile bytes; strict typing there catches the
Optional access and wrong container types that tests miss. The Twisted adapters are not
listed: Twisted's and zope's stubs make strict mode noise there, not signal.
"""

from __future__ import annotations

import pathlib

import pytest

mypy_api = pytest.importorskip("mypy.api", reason="mypy is in the test extra (setup.cfg)")

ROOT = pathlib.Path(__file__).resolve().parents[2]

SANS_IO_CORES = [
    # SIP: message.py re-exports headers, records and parser; peers holds the s.18 rules
    "msrp_gateway/sip/message.py",
    "msrp_gateway/sip/headers.py",
    "msrp_gateway/sip/records.py",
    "msrp_gateway/sip/parser.py",
    "msrp_gateway/sip/uri.py",
    "msrp_gateway/sip/transaction.py",
    "msrp_gateway/sip/peers.py",
    # MSRP: message.py re-exports grammar, records, serializer and parser
    "msrp_gateway/msrp/message.py",
    "msrp_gateway/msrp/grammar.py",
    "msrp_gateway/msrp/records.py",
    "msrp_gateway/msrp/serializer.py",
    "msrp_gateway/msrp/parser.py",
    "msrp_gateway/msrp/uri.py",
    "msrp_gateway/msrp/chunks.py",
    "msrp_gateway/msrp/rules.py",
    # SDP
    "msrp_gateway/sdp.py",
]


def test_the_sans_io_cores_are_mypy_strict_clean(tmp_path):
    missing = [f for f in SANS_IO_CORES if not (ROOT / f).exists()]
    assert not missing, f"listed cores not found (moved? update the list): {missing}"
    stdout, stderr, status = mypy_api.run([
        "--strict", "--no-error-summary", "--show-error-codes",
        "--cache-dir", str(tmp_path / "mypy-cache"),
        *(str(ROOT / f) for f in SANS_IO_CORES),
    ])
    assert status == 0, f"mypy --strict reports:\n{stdout}{stderr}"
