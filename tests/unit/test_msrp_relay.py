"""RFC 4976 relay client, sans sockets: Digest values, challenge parsing, and the AUTH
exchange driven on a `LinkCore` fed by hand with time on `task.Clock`."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pytest
from twisted.internet import defer, task

from msrp_gateway.msrp.link import LinkCore
from msrp_gateway.msrp.message import FrameParser, MSRPParseError, MSRPRequest, MSRPResponse
from msrp_gateway.msrp.relay import (
    RelayAuthError,
    RelayClient,
    authorization,
    digest_response,
    parse_challenge,
)
from msrp_gateway.msrp.session import SessionSettings, SessionTable

RELAY = "msrp://relay.example.net:2855;tcp"
ME = "msrp://10.0.0.1:2855;tcp"
USE_PATH = "msrp://relay.example.net:2855/kjfjan;tcp"


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


# ---- pure functions -------------------------------------------------------------------

def test_digest_matches_the_rfc_2617_example() -> None:
    """RFC 2617 s.3.5: Mufasa / "Circle Of Life" gives 6629fae4...."""
    assert digest_response(
        "Mufasa", "Circle Of Life", "testrealm@host.com",
        "dcd98b7102dd2f0e8b11d0f600bfb0c093", "GET", "/dir/index.html",
        qop="auth", nc="00000001", cnonce="0a4f113b",
    ) == "6629fae49393a05397450978507c4ef1"


def test_digest_without_qop_is_the_rfc_2069_form() -> None:
    ha1, ha2 = md5("u:r:p"), md5("AUTH:" + RELAY)
    assert digest_response("u", "p", "r", "n1", "AUTH", RELAY) == md5(f"{ha1}:n1:{ha2}")


def test_digest_md5_sess_hashes_nonce_and_cnonce_into_ha1() -> None:
    ha1 = md5(f"{md5('u:r:p')}:n1:c1")
    expected = md5(f"{ha1}:n1:00000002:c1:auth:{md5('AUTH:' + RELAY)}")
    assert digest_response("u", "p", "r", "n1", "AUTH", RELAY, qop="auth",
                           nc="00000002", cnonce="c1", algorithm="MD5-sess") == expected


def test_digest_refuses_an_unknown_algorithm() -> None:
    with pytest.raises(ValueError, match="SHA-512"):
        digest_response("u", "p", "r", "n", "AUTH", RELAY, algorithm="SHA-512")


def test_challenge_parsing_unquotes_and_lowercases_names() -> None:
    got = parse_challenge('Digest Realm="relay.example.net", nonce="a\\"b", qop="auth", '
                          'algorithm=MD5,opaque="xyz"')
    assert got == {"realm": "relay.example.net", "nonce": 'a"b', "qop": "auth",
                   "algorithm": "MD5", "opaque": "xyz"}


@pytest.mark.parametrize("value", [
    'Basic realm="x"', 'Digest nonce="n"', 'Digest realm="r" nonce="n"',
    'Digest realm="r", nonce="n", =x', "Digest " + "a=b, " * 2000,
])
def test_bad_challenges_raise_the_parsers_own_error(value: str) -> None:
    with pytest.raises(MSRPParseError):
        parse_challenge(value)


def _params(value: str) -> dict[str, str]:
    assert value.startswith("Digest ")
    return {k: v.strip('"') for k, v in re.findall(r'(\w+)=("[^"]*"|[^,\s]+)', value)}


def test_authorization_answers_the_challenge_for_method_auth_and_the_relay_uri() -> None:
    """RFC 4976 s.5: A2 uses method AUTH and the relay's URI (the AUTH's To-Path)."""
    value = authorization({"realm": "r", "nonce": "n1", "qop": "auth,auth-int",
                           "opaque": "op"}, "alice", "secret", RELAY, cnonce="c1", nc=3)
    p = _params(value)
    ha1, ha2 = md5("alice:r:secret"), md5("AUTH:" + RELAY)
    assert p["response"] == md5(f"{ha1}:n1:00000003:c1:auth:{ha2}")
    assert (p["username"], p["uri"], p["qop"], p["nc"], p["opaque"]) == (
        "alice", RELAY, "auth", "00000003", "op")


# ---- the AUTH exchange on a hand-fed connection ----------------------------------------

class Relay:
    """Hands out LinkCores whose writes are parsed back; the test plays the relay's side."""

    def __init__(self, clock: task.Clock) -> None:
        self.clock = clock
        self.settings = SessionSettings()
        self.sent: list[Any] = []
        self.out = FrameParser()
        self.closed = 0
        self.opened = 0
        self.core: LinkCore | None = None

    def _write(self, data: bytes) -> None:
        self.sent += self.out.feed(data)

    def _lose(self) -> None:
        self.closed += 1

    def open(self, uri: str) -> defer.Deferred[LinkCore]:
        assert uri == RELAY
        self.opened += 1
        self.core = LinkCore(self.clock, SessionTable(self.settings), self.settings,
                             FrameParser(), self._write, self._lose, lambda link: None,
                             "relay")
        return defer.succeed(self.core)

    def last(self) -> MSRPRequest:
        frame = self.sent[-1]
        assert isinstance(frame, MSRPRequest)
        return frame

    def answer(self, status: int, headers: list[tuple[str, str]] = (), comment: str = "") -> None:
        req = self.last()
        resp = MSRPResponse(req.transaction_id, status, comment or None,
                            [("To-Path", req.from_path[0]), ("From-Path", RELAY), *headers])
        assert self.core is not None
        self.core.data_received(resp.to_bytes())


def failure_code(d: defer.Deferred[Any]) -> int:
    got: list[Any] = []
    d.addErrback(got.append)
    return int(got[0].value.code)


CHALLENGE = ("WWW-Authenticate", 'Digest realm="relay.example.net", nonce="n0nce", qop="auth"')


def client(clock: task.Clock, relay: Relay, **kw: Any) -> RelayClient:
    kw.setdefault("username", "alice")
    kw.setdefault("password", "secret")
    return RelayClient(clock, RELAY, lambda: ME, relay.open, **kw)


def test_auth_challenge_credentials_then_use_path_and_expiry() -> None:
    clock, results = task.Clock(), []
    relay = Relay(clock)
    rc = client(clock, relay)
    rc.start().addBoth(results.append)
    first = relay.last()
    assert first.method == "AUTH" and "Authorization" not in first.headers
    assert first.to_path == [RELAY] and first.from_path[0].startswith("msrp://10.0.0.1:2855/")
    relay.answer(401, [CHALLENGE])
    second = relay.last()
    p = _params(second.headers.get("Authorization") or "")
    expected = md5(f"{md5('alice:relay.example.net:secret')}:n0nce:{p['nc']}:{p['cnonce']}"
                   f":auth:{md5('AUTH:' + RELAY)}")
    assert p["response"] == expected and second.transaction_id != first.transaction_id
    relay.answer(200, [("Use-Path", USE_PATH), ("Expires", "600")])
    assert results == [None] and rc.ready and rc.use_path == [USE_PATH]
    assert rc.link_deferred().result is relay.core and relay.core.persistent


def test_re_auth_before_the_granted_lifetime_ends() -> None:
    clock = task.Clock()
    relay = Relay(clock)
    rc = client(clock, relay)
    rc.start()
    relay.answer(401, [CHALLENGE])
    relay.answer(200, [("Use-Path", USE_PATH), ("Expires", "600")])
    n = len(relay.sent)
    clock.advance(479)
    assert len(relay.sent) == n  # not yet
    clock.advance(1)  # 80 % of 600 s
    assert relay.last().method == "AUTH" and len(relay.sent) == n + 1
    relay.answer(401, [CHALLENGE])
    relay.answer(200, [("Use-Path", USE_PATH), ("Expires", "600")])
    assert rc.auth_count == 2 and rc.ready and relay.opened == 1


def test_wrong_credentials_fail_start_and_retry_later() -> None:
    clock, results = task.Clock(), []
    relay = Relay(clock)
    rc = client(clock, relay, password="wrong")
    rc.start().addBoth(results.append)
    relay.answer(401, [CHALLENGE])
    relay.answer(401, [CHALLENGE])
    assert isinstance(results[0].value, RelayAuthError) and results[0].value.code == 401
    assert "relay_password" in str(results[0].value) and not rc.ready
    n = len(relay.sent)
    clock.advance(1.0)
    assert len(relay.sent) == n + 1 and relay.last().method == "AUTH"
    assert failure_code(rc.link_deferred()) == 503 and not rc.ready


def test_no_credentials_configured_names_the_keys() -> None:
    clock, results = task.Clock(), []
    relay = Relay(clock)
    rc = RelayClient(clock, RELAY, lambda: ME, relay.open)
    rc.start().addBoth(results.append)
    relay.answer(401, [CHALLENGE])
    assert "relay_username" in str(results[0].value)
    rc.stop()
    assert not clock.getDelayedCalls()


def test_a_200_without_use_path_is_refused() -> None:
    clock, results = task.Clock(), []
    relay = Relay(clock)
    rc = client(clock, relay)
    rc.start().addBoth(results.append)
    relay.answer(200, [("Expires", "600")])
    assert "Use-Path" in str(results[0].value) and not rc.ready


def test_no_answer_is_a_408_and_a_lost_connection_is_reopened() -> None:
    clock, results = task.Clock(), []
    relay = Relay(clock)
    rc = client(clock, relay, timeout=5.0)
    rc.start().addBoth(results.append)
    clock.advance(5.0)
    assert results[0].value.code == 408
    clock.advance(1.0)  # retry on the same connection
    relay.answer(401, [CHALLENGE])
    relay.answer(200, [("Use-Path", USE_PATH), ("Expires", "600")])
    assert rc.ready and relay.opened == 1
    first = relay.core
    assert first is not None
    first.connection_lost("gone")
    assert not rc.ready and rc.use_path == []
    assert failure_code(rc.link_deferred()) == 503
    clock.advance(1.0)
    assert relay.opened == 2 and relay.core is not first and relay.last().method == "AUTH"
    relay.answer(401, [CHALLENGE])
    relay.answer(200, [("Use-Path", USE_PATH), ("Expires", "600")])
    assert rc.ready and rc.link is relay.core


def test_stop_leaves_no_timer() -> None:
    clock = task.Clock()
    relay = Relay(clock)
    rc = client(clock, relay)
    rc.start().addErrback(lambda f: None)
    relay.answer(401, [CHALLENGE])
    relay.answer(200, [("Use-Path", USE_PATH), ("Expires", "600")])
    rc.stop()
    assert not rc.ready and clock.getDelayedCalls() == []


def test_without_our_own_uri_auth_waits_and_says_why() -> None:
    clock, results = task.Clock(), []
    relay = Relay(clock)
    own: list[str | None] = [None]
    rc = RelayClient(clock, RELAY, lambda: own[0], relay.open, username="alice",
                     password="secret")
    rc.start().addBoth(results.append)
    assert results[0].value.code == 503 and "my_uri" in str(results[0].value)
    assert relay.sent == []  # nothing malformed went out
    own[0] = ME
    clock.advance(1.0)
    assert relay.last().method == "AUTH" and relay.last().from_path[0].startswith(
        "msrp://10.0.0.1:2855/")


def test_the_rfc_4976_example_challenge_is_answered_for_its_relay_uri() -> None:
    """RFC 4976 s.7's 401 (parsed off the wire) gives a checkable Authorization."""
    from msrp_gateway.msrp.message import parse_frames

    raw = ("MSRP 49fh 401 Unauthorized\r\n"
           "To-Path: msrps://alice.example.com:9892/98cjs;tcp\r\n"
           "From-Path: msrps://alice@intra.example.com;tcp\r\n"
           'WWW-Authenticate: Digest realm="intra.example.com", qop="auth", '
           'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093"\r\n'
           "-------49fh$\r\n").encode()
    [resp] = parse_frames(raw)
    relay_uri = "msrps://alice@intra.example.com;tcp"
    p = _params(authorization(parse_challenge(resp.headers.get("WWW-Authenticate")),
                              "Alice", "secret", relay_uri, cnonce="0a4f113b"))
    ha1, ha2 = md5("Alice:intra.example.com:secret"), md5("AUTH:" + relay_uri)
    assert p["response"] == md5(f"{ha1}:dcd98b7102dd2f0e8b11d0f600bfb0c093:00000001:"
                                f"0a4f113b:auth:{ha2}")
    assert (p["realm"], p["uri"], p["qop"]) == ("intra.example.com", relay_uri, "auth")


# ---- 423 Interval Out-of-Bounds (RFC 4976 s.5.1) ---------------------------------------

def authed(relay: Relay) -> None:
    """Play the challenge and its answer up to the AUTH that carries credentials."""
    relay.answer(401, [CHALLENGE])


def test_the_requested_lifetime_goes_in_every_auth() -> None:
    clock = task.Clock()
    relay = Relay(clock)
    rc = client(clock, relay, expires=900)
    rc.start()
    assert relay.last().headers.get("Expires") == "900"
    authed(relay)
    assert relay.last().headers.get("Expires") == "900"
    relay.answer(200, [("Use-Path", USE_PATH), ("Expires", "900")])
    assert rc.ready and rc.expires_at == 900


def test_without_a_requested_lifetime_auth_carries_no_expires() -> None:
    clock = task.Clock()
    relay = Relay(clock)
    client(clock, relay).start()
    assert "Expires" not in relay.last().headers


def test_423_min_expires_is_asked_again_with_fresh_digest_and_kept_for_refreshes() -> None:
    clock, results = task.Clock(), []
    relay = Relay(clock)
    rc = client(clock, relay, expires=30)
    rc.start().addBoth(results.append)
    authed(relay)
    refused = relay.last()
    relay.answer(423, [("Min-Expires", "300")], "Interval Out-of-Bounds")
    retry = relay.last()
    assert retry.method == "AUTH" and retry.transaction_id != refused.transaction_id
    assert retry.headers.get("Expires") == "300"
    before, after = (_params(m.headers.get("Authorization") or "") for m in (refused, retry))
    assert (before["nonce"], before["nc"], after["nc"]) == ("n0nce", "00000001", "00000002")
    expected = md5(f"{md5('alice:relay.example.net:secret')}:n0nce:00000002:{after['cnonce']}"
                   f":auth:{md5('AUTH:' + RELAY)}")
    assert after["response"] == expected
    relay.answer(200, [("Use-Path", USE_PATH), ("Expires", "300")])
    assert results == [None] and rc.ready and rc.requested_expires == 300
    clock.advance(240)  # 80 % of the granted 300 s
    assert relay.last().headers.get("Expires") == "300"  # no second 423 on refresh


def test_423_max_expires_lowers_the_request() -> None:
    clock, results = task.Clock(), []
    relay = Relay(clock)
    rc = client(clock, relay, expires=86400)
    rc.start().addBoth(results.append)
    authed(relay)
    relay.answer(423, [("Max-Expires", "3600")])
    assert relay.last().headers.get("Expires") == "3600"
    relay.answer(200, [("Use-Path", USE_PATH), ("Expires", "3600")])
    assert results == [None] and rc.expires_at == 3600


def test_423_before_any_challenge_then_401_is_answered() -> None:
    """A relay may check the lifetime before the credentials."""
    clock, results = task.Clock(), []
    relay = Relay(clock)
    rc = client(clock, relay, expires=10)
    rc.start().addBoth(results.append)
    relay.answer(423, [("Min-Expires", "60")])
    assert relay.last().headers.get("Expires") == "60"
    assert "Authorization" not in relay.last().headers
    relay.answer(401, [CHALLENGE])
    assert "Authorization" in relay.last().headers
    relay.answer(200, [("Use-Path", USE_PATH), ("Expires", "60")])
    assert results == [None] and rc.ready


def test_a_401_after_a_423_retry_answers_the_new_nonce() -> None:
    """Relays that take each nonce once challenge the retry: that is not a refusal."""
    clock, results = task.Clock(), []
    relay = Relay(clock)
    rc = client(clock, relay, expires=10)
    rc.start().addBoth(results.append)
    authed(relay)
    relay.answer(423, [("Min-Expires", "60")])
    relay.answer(401, [("WWW-Authenticate", 'Digest realm="relay.example.net", '
                                             'nonce="second", qop="auth"')])
    p = _params(relay.last().headers.get("Authorization") or "")
    assert (p["nonce"], p["nc"]) == ("second", "00000001")
    assert relay.last().headers.get("Expires") == "60"
    relay.answer(200, [("Use-Path", USE_PATH), ("Expires", "60")])
    assert results == [None] and rc.ready


def test_a_stale_nonce_is_answered_again_but_a_plain_second_401_is_a_refusal() -> None:
    clock, results = task.Clock(), []
    relay = Relay(clock)
    rc = client(clock, relay)
    rc.start().addBoth(results.append)
    authed(relay)
    relay.answer(401, [("WWW-Authenticate", 'Digest realm="relay.example.net", '
                                             'nonce="n2", stale=true, qop="auth"')])
    assert _params(relay.last().headers.get("Authorization") or "")["nonce"] == "n2"
    relay.answer(401, [CHALLENGE])
    assert results[0].value.code == 401 and "relay_password" in str(results[0].value)


@pytest.mark.parametrize("headers, why", [
    ([], "gives no Min-Expires"),
    ([("Min-Expires", "soon")], "bad Min-Expires"),
    ([("Min-Expires", "0")], "bad Min-Expires"),
    ([("Max-Expires", "99999999999")], "bad Max-Expires"),
    ([("Min-Expires", "45")], "refused the 45 s lifetime"),  # what we asked for: a loop
])
def test_an_unusable_423_fails_the_exchange_and_says_why(headers: list[tuple[str, str]],
                                                          why: str) -> None:
    clock, results = task.Clock(), []
    relay = Relay(clock)
    rc = client(clock, relay, expires=45)
    rc.start().addBoth(results.append)
    authed(relay)
    n = len(relay.sent)
    relay.answer(423, headers)
    assert len(relay.sent) == n  # nothing more sent in this exchange
    err = results[0].value
    assert isinstance(err, RelayAuthError) and err.code == 423 and why in str(err)
    assert not rc.ready and rc.requested_expires == 45


def test_423s_are_retried_a_bounded_number_of_times_then_later_with_back_off() -> None:
    clock, results = task.Clock(), []
    relay = Relay(clock)
    rc = client(clock, relay, expires=10)
    rc.start().addBoth(results.append)
    authed(relay)
    for value in ("20", "30", "40"):  # a relay that moves its bound every time
        relay.answer(423, [("Min-Expires", value)])
    err = results[0].value
    assert err.code == 423 and "3 AUTH lifetimes" in str(err)
    auths = [f for f in relay.sent if isinstance(f, MSRPRequest)]
    assert len(auths) == 2 + 2  # challenge round + credentials, then two retries
    clock.advance(1.0)  # the client's back-off: a new exchange, asking the last bound
    assert relay.last().headers.get("Expires") == "30" and len(relay.sent) == len(auths) + 1


def test_a_relay_that_never_gives_a_200_is_bounded_per_exchange() -> None:
    clock, results = task.Clock(), []
    relay = Relay(clock)
    rc = client(clock, relay)
    rc.start().addBoth(results.append)
    for i in range(10):
        if results:
            break
        relay.answer(401, [("WWW-Authenticate", f'Digest realm="r", nonce="n{i}", '
                                                 'stale=true')])
    assert results[0].value.code == 503 and "6 requests" in str(results[0].value)
    assert len([f for f in relay.sent if isinstance(f, MSRPRequest)]) == 6


def test_a_requested_lifetime_out_of_range_is_refused_at_construction() -> None:
    clock = task.Clock()
    relay = Relay(clock)
    for bad in (0, -5, 2**32):
        with pytest.raises(ValueError, match="lifetime"):
            client(clock, relay, expires=bad)
