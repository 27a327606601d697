"""``mypy --strict`` holds on the sans-IO protocol cores (STYLE.md "Shape of the code").

The cores are what every layer trusts with hostile bytes; strict typing there catches the
Optional access and wrong container types that tests miss. The SIP package's Twisted side
is held to strict mode too; where Twisted's or zope's stubs are noise, the line carries a
narrow ``# type: ignore[code]`` with the reason.
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


def strict(paths: list[str], cache: pathlib.Path) -> tuple[int, str]:
    stdout, stderr, status = mypy_api.run([
        "--strict", "--warn-unused-ignores", "--no-error-summary", "--show-error-codes",
        "--cache-dir", str(cache), *(str(ROOT / p) for p in paths),
    ])
    return status, stdout + stderr


def test_the_sans_io_cores_are_mypy_strict_clean(tmp_path):
    missing = [f for f in SANS_IO_CORES if not (ROOT / f).exists()]
    assert not missing, f"listed cores not found (moved? update the list): {missing}"
    status, report = strict(SANS_IO_CORES, tmp_path / "mypy-cache")
    assert status == 0, f"mypy --strict reports:\n{report}"


def test_the_whole_sip_package_is_mypy_strict_clean(tmp_path):
    status, report = strict(["msrp_gateway/sip"], tmp_path / "mypy-cache")
    assert status == 0, f"mypy --strict reports:\n{report}"
