"""``mypy --strict`` holds on the sans-IO protocol cores (STYLE.md "Shape of the code").

The cores are what every layer trusts with hostile bytes; strict typing there catches the
Optional access and wrong container types that tests miss. The SIP and MSRP packages
whole (Twisted sides included), SDP (sdp.py and sdp_parse.py) and every UA module
(ua.py and each ua_*.py, named one by one) are held to strict mode too, and so are the
service wiring, tap and the event bus (their own code); where Twisted's or zope's stubs
are noise, the line carries a narrow ``# type: ignore[code]`` with the reason.

mypy is in setup.cfg's test extra: without it these tests skip locally and fail under
``CI=true``, as a missing interop tool does.
"""

from __future__ import annotations

import os
import pathlib
import sys
from types import ModuleType

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]

SANS_IO_CORES = [
    # below every layer: socket strings; configuration
    "msrp_gateway/sockets.py",
    "msrp_gateway/config.py",
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
    "msrp_gateway/msrp/fingerprint.py",
    # SDP: sdp.py builds and negotiates; sdp_parse.py reads hostile offers and answers
    "msrp_gateway/sdp.py",
    "msrp_gateway/sdp_parse.py",
]

# The UA on top of both stacks: ua.py re-exports its parts, each named here so none is
# checked only as an import of another (test_every_ua_and_sdp_module_is_listed).
UA_MODULES = [
    "msrp_gateway/ua.py",
    "msrp_gateway/ua_records.py",
    "msrp_gateway/ua_core.py",
    "msrp_gateway/ua_uac.py",
    "msrp_gateway/ua_uas.py",
    "msrp_gateway/ua_transports.py",
]

# The Twisted sides held to the same rule: each stack's whole package (links, outgoing
# messages, relays, sessions, transports; dialogs, stack) and the UA on top of both.
STRICT_PACKAGES = ["msrp_gateway/sip", "msrp_gateway/msrp", *UA_MODULES]

# The wiring on top of everything (service, tap) and the event bus, each module's own code:
# what they import is read for its types only (--follow-imports=silent), so the gateway
# and MI packages below are held to their own rules here, not to this test.
WIRING_MODULES = ["msrp_gateway/service.py", "msrp_gateway/tap.py", "msrp_gateway/events.py"]
SILENT_IMPORTS = ["--follow-imports=silent"]


def mypy_api() -> ModuleType:
    """mypy.api; a skip without it, a failure under CI=true (the project's tool rule)."""
    try:
        from mypy import api
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("mypy is required under CI=true: install the test extra "
                        "(pip install '.[test]', setup.cfg)")
        pytest.skip("mypy is not installed (it is in setup.cfg's test extra)")
    return api


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """One cache for the module's runs: Twisted's stubs are read once, not per test."""
    return tmp_path_factory.mktemp("mypy-cache")


def strict(paths: list[str], cache: pathlib.Path, options: list[str] | None = None
           ) -> tuple[int, str]:
    options = options or []
    # A cache per option set: runs with other options would otherwise invalidate it.
    cache_dir = cache / ("-".join(o.strip("-") for o in options) or "default")
    stdout, stderr, status = mypy_api().run([
        "--strict", "--warn-unused-ignores", "--no-error-summary", "--show-error-codes",
        *options, "--cache-dir", str(cache_dir), *(str(ROOT / p) for p in paths),
    ])
    return status, stdout + stderr


def test_the_sans_io_cores_are_mypy_strict_clean(cache):
    missing = [f for f in SANS_IO_CORES if not (ROOT / f).exists()]
    assert not missing, f"listed cores not found (moved? update the list): {missing}"
    status, report = strict(SANS_IO_CORES, cache)
    assert status == 0, f"mypy --strict reports:\n{report}"


def test_every_ua_and_sdp_module_is_listed():
    """A module split out of the UA or SDP later (ua_*.py, sdp_*.py) is held to the rule
    by name, and a listed one that moved is noticed."""
    found = {p.relative_to(ROOT).as_posix() for pattern in ("ua*.py", "sdp*.py")
             for p in (ROOT / "msrp_gateway").glob(pattern)}
    listed = set(UA_MODULES) | {f for f in SANS_IO_CORES if f.startswith("msrp_gateway/sdp")}
    assert found == listed, (f"not listed: {sorted(found - listed)}; "
                             f"listed but missing: {sorted(listed - found)}")


def test_both_stacks_and_the_ua_are_mypy_strict_clean(cache):
    missing = [f for f in UA_MODULES if not (ROOT / f).exists()]
    assert not missing, f"listed UA modules not found (moved? update the list): {missing}"
    status, report = strict(STRICT_PACKAGES, cache)
    assert status == 0, f"mypy --strict reports:\n{report}"


def test_the_service_wiring_and_the_event_bus_are_mypy_strict_clean(cache):
    missing = [f for f in WIRING_MODULES if not (ROOT / f).exists()]
    assert not missing, f"listed modules not found (moved? update the list): {missing}"
    status, report = strict(WIRING_MODULES, cache, SILENT_IMPORTS)
    assert status == 0, f"mypy --strict reports:\n{report}"


@pytest.mark.parametrize("options", [None, SILENT_IMPORTS], ids=["default", "silent-imports"])
def test_the_check_sees_a_type_error(cache, tmp_path, options):
    """Not vacuous: the same runs report an Optional used as if always set."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f(x: int | None) -> int:\n    return x + 1\n")
    status, report = strict([str(bad)], cache, options)
    assert status == 1 and "[operator]" in report


@pytest.mark.parametrize("ci, outcome", [("true", pytest.fail.Exception),
                                         ("", pytest.skip.Exception)])
def test_missing_mypy_fails_under_ci_and_skips_locally(monkeypatch, ci, outcome):
    monkeypatch.setitem(sys.modules, "mypy", None)  # makes ``from mypy import api`` fail
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome):
        mypy_api()
