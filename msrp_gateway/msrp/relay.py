"""The client side of MSRP relays (RFC 4976): Digest AUTH, Use-Path, refresh before expiry.

A client behind a relay keeps one connection to it, authenticates with AUTH (401 with a
Digest challenge, then AUTH with Authorization, RFC 4976 s.5 / RFC 2617), and gets a
200 whose Use-Path goes before its own URI in every a=path it advertises; everything it
sends then goes through that connection, with the Use-Path in front of the peer's path.
A lifetime the relay will not grant (423 Interval Out-of-Bounds, RFC 4976 s.5.1) is asked
again with the relay's Min-Expires or Max-Expires, a bounded number of times.

`digest_response`, `parse_challenge` and `authorization` are pure functions; `RelayClient`
drives a `LinkCore` on an injected clock (tests run it on `task.Clock`), and
`transport.MSRPStack` gives it connections.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import secrets
from typing import Callable

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from .link import LinkCore
from .message import MSRPHeaders, MSRPParseError, MSRPRequest, MSRPResponse
from .rules import NOT_CONNECTED, Clock, MSRPSendError, Timer, new_id
from .uri import parse_msrp_uri

__all__ = [
    "RelayAuthError",
    "RelayClient",
    "authorization",
    "digest_response",
    "parse_challenge",
]

log = Logger()

AUTH_TIMEOUT = 30.0  # s, as a SEND's (RFC 4975 s.7.1.1)
DEFAULT_EXPIRES = 3600  # s, when a relay's 200 gives none
REFRESH_SHARE = 0.8  # re-AUTH once this share of the granted lifetime has passed
RETRY_FIRST = 1.0
RETRY_MAX = 60.0
MAX_CHALLENGE = 4096  # bytes of one WWW-Authenticate value we look at
MAX_INTERVAL_RETRIES = 2  # AUTHs re-sent per exchange after a 423 Interval Out-of-Bounds
MAX_AUTH_REQUESTS = 6  # AUTH requests in one exchange, whatever the relay answers
MAX_INTERVAL = 2**32 - 1  # s, the largest Expires / Min-Expires / Max-Expires (RFC 4976 s.12)

_PARAM_RE = re.compile(r'\s*([A-Za-z0-9_\-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,"]+)\s*(?:,|\Z)')
_QUOTE_RE = re.compile(r"\\(.)")


class RelayAuthError(Exception):
    """The relay refused us: `code` is its status (or ours: 408, 503), `reason` says why."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason

    def __str__(self) -> str:
        return f"MSRP relay AUTH failed: {self.code} {self.reason}"


def parse_challenge(value: str) -> dict[str, str]:
    """`Digest realm="r", nonce="n", qop="auth"` -> {"realm": "r", ...} (names lower-cased).

    Raises `MSRPParseError` for another scheme, a value over 4 KiB or broken syntax.
    """
    if len(value) > MAX_CHALLENGE:
        raise MSRPParseError("WWW-Authenticate too long")
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        raise MSRPParseError(f"WWW-Authenticate scheme {scheme[:20]!r} is not Digest")
    params: dict[str, str] = {}
    pos = 0
    rest = rest.strip()
    while pos < len(rest):
        m = _PARAM_RE.match(rest, pos)
        if m is None:
            raise MSRPParseError("malformed Digest challenge")
        raw = m.group(2)
        if raw.startswith('"'):
            raw = _QUOTE_RE.sub(r"\1", raw[1:-1])
        params[m.group(1).lower()] = raw
        pos = m.end()
    if "realm" not in params or "nonce" not in params:
        raise MSRPParseError("Digest challenge without realm or nonce")
    return params


def _allowed_interval(resp: MSRPResponse, requested: int | None) -> int:
    """The lifetime to ask for after a 423: the relay's Min-Expires or Max-Expires.

    Raises `RelayAuthError(423)` when the 423 gives neither, a malformed value, or the
    value we just asked for (asking again could only loop).
    """
    for name in ("Min-Expires", "Max-Expires"):
        value = resp.headers.get(name)
        if value is None:
            continue
        text = value.strip()
        if not (text.isascii() and text.isdigit()) or len(text) > 10 \
                or not 0 < int(text) <= MAX_INTERVAL:
            raise RelayAuthError(423, f"relay's 423 has a bad {name} {text[:20]!r}")
        allowed = int(text)
        if allowed == requested:
            raise RelayAuthError(423, f"relay refused the {requested} s lifetime its own "
                                      f"{name} allows")
        return allowed
    raise RelayAuthError(423, "relay's 423 Interval Out-of-Bounds gives no Min-Expires "
                              "or Max-Expires")


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def digest_response(username: str, password: str, realm: str, nonce: str, method: str,
                    uri: str, *, qop: str | None = None, nc: str = "00000001",
                    cnonce: str = "", algorithm: str = "MD5", body: bytes = b"") -> str:
    """The RFC 2617 s.3.2.2.1 request-digest (MD5 or MD5-sess; qop auth, auth-int or none)."""
    ha1 = _md5(f"{username}:{realm}:{password}")
    if algorithm.lower() == "md5-sess":
        ha1 = _md5(f"{ha1}:{nonce}:{cnonce}")
    elif algorithm.lower() != "md5":
        raise ValueError(f"Digest algorithm {algorithm!r} is not supported (MD5, MD5-sess)")
    a2 = f"{method}:{uri}"
    if qop == "auth-int":
        a2 += ":" + hashlib.md5(body).hexdigest()
    ha2 = _md5(a2)
    if qop:
        return _md5(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return _md5(f"{ha1}:{nonce}:{ha2}")


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def authorization(challenge: dict[str, str], username: str, password: str, uri: str, *,
                  cnonce: str | None = None, nc: int = 1) -> str:
    """The Authorization value answering a parsed challenge for an AUTH to `uri`.

    RFC 4976 s.5: method `AUTH`, digest-uri the relay's URI (the AUTH's To-Path).
    """
    offered = [q.strip().lower() for q in challenge.get("qop", "").split(",") if q.strip()]
    qop = "auth" if "auth" in offered or not offered else (
        "auth-int" if "auth-int" in offered else None)
    if offered and qop is None:
        raise ValueError(f"relay offers qop {challenge['qop']!r}; we do auth and auth-int")
    algorithm = challenge.get("algorithm", "MD5")
    cnonce = cnonce or secrets.token_hex(8)
    nc_text = f"{nc:08x}"
    response = digest_response(username, password, challenge["realm"], challenge["nonce"],
                               "AUTH", uri, qop=qop if offered else None, nc=nc_text,
                               cnonce=cnonce, algorithm=algorithm)
    parts = [f"username={_quoted(username)}", f"realm={_quoted(challenge['realm'])}",
             f"nonce={_quoted(challenge['nonce'])}", f"uri={_quoted(uri)}",
             f"response={_quoted(response)}", f"algorithm={algorithm}"]
    if offered:
        parts += [f"qop={qop}", f"nc={nc_text}", f"cnonce={_quoted(cnonce)}"]
    if "opaque" in challenge:
        parts.append(f"opaque={_quoted(challenge['opaque'])}")
    return "Digest " + ", ".join(parts)


class RelayClient:
    """One authenticated connection to our relay, kept up and refreshed.

    `open_link(uri)` opens a connection (the stack's outbound connector); `own_uri()` gives
    our URI (None until something listens). `start()` fires when the first AUTH succeeded
    or errbacks `RelayAuthError`; either way the client keeps retrying (1 s doubling to
    60 s) until `stop()`. `use_path` is empty whenever we are not authenticated.
    `expires` is the lifetime to ask for in each AUTH (None: let the relay choose); the
    granted one (`expires_at`) is refreshed at 80 %.
    """

    def __init__(self, clock: Clock, relay_uri: str, own_uri: Callable[[], str | None],
                 open_link: Callable[[str], defer.Deferred[LinkCore]], *,
                 username: str | None = None, password: str | None = None,
                 timeout: float = AUTH_TIMEOUT, expires: int | None = None) -> None:
        parse_msrp_uri(relay_uri)  # MSRPParseError for a bad relay_uri
        if expires is not None and not 0 < expires <= MAX_INTERVAL:
            raise ValueError(f"relay AUTH lifetime {expires!r}: expected 1..{MAX_INTERVAL} s")
        self.clock = clock
        self.relay_uri = relay_uri
        self._own_uri = own_uri
        self._open_link = open_link
        self.username = username
        self.password = password
        self.timeout = timeout
        # The lifetime each AUTH asks for (None: the relay's choice); a 423's Min-Expires or
        # Max-Expires replaces it, so refreshes ask for what the relay allows.
        self.requested_expires: int | None = expires
        self.link: LinkCore | None = None
        self.use_path: list[str] = []
        self.expires_at: float | None = None
        self.auth_count = 0  # successful AUTHs so far (first and refreshes)
        self._from_uri = ""
        self._nc = 0
        self._started = False
        self._stopped = False
        self._busy = False
        self._timer: Timer | None = None
        self._retry = RETRY_FIRST
        self._waiters: list[defer.Deferred[None]] = []

    @property
    def ready(self) -> bool:
        return bool(self.use_path) and self.link is not None and not self.link.lost

    def start(self) -> defer.Deferred[None]:
        """Connect and AUTH (once); fires on the first success, errbacks on a refusal."""
        if self.ready:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._waiters.append(d)
        if not self._started:
            self._started = True
            self._run()
        return d

    def stop(self) -> None:
        self._stopped = True
        self._cancel_timer()
        self.use_path = []
        self._fire(RelayAuthError(503, "relay client stopped"))

    def link_deferred(self) -> defer.Deferred[LinkCore]:
        """The relay connection for a session to send through (503 while not authenticated)."""
        if self.ready and self.link is not None:
            return defer.succeed(self.link)
        return defer.fail(MSRPSendError(NOT_CONNECTED, "MSRP relay not authenticated"))

    # -- the AUTH exchange -------------------------------------------------------------

    def _run(self) -> None:
        """Connect if needed, then AUTH (challenge, credentials, 200)."""
        self._timer = None
        if self._stopped or self._busy:
            return
        self._busy = True
        if self.link is not None and not self.link.lost and not self.link.closing:
            d: defer.Deferred[LinkCore] = defer.succeed(self.link)
        else:
            d = self._open_link(self.relay_uri)
        d.addCallback(self._linked)
        d.addCallback(self._authenticate)
        d.addCallbacks(self._succeeded, self._failed)

    def _linked(self, link: LinkCore) -> LinkCore:
        if not self._from_uri:
            own = self._own_uri()
            if own is None:
                raise RelayAuthError(503, "[msrp] my_uri is not set and nothing listens")
            # RFC 4976 s.5: the AUTH comes From our URI, with a session-id of its own.
            self._from_uri = str(dataclasses.replace(parse_msrp_uri(own), session_id=new_id()))
        if link is not self.link:
            self.link = link
            link.keep_open()
            link.on_lost = self._lost
        return link

    def _auth_request(self, credentials: str | None, expires: int | None) -> MSRPRequest:
        headers = MSRPHeaders([("To-Path", self.relay_uri), ("From-Path", self._from_uri)])
        if credentials is not None:
            headers.add("Authorization", credentials)
        if expires is not None:
            headers.add("Expires", str(expires))
        return MSRPRequest(new_id(), "AUTH", headers)

    def _authenticate(self, link: LinkCore) -> defer.Deferred[tuple[list[str], int | None]]:
        return defer.Deferred.fromCoroutine(self._exchange(link))

    def _answer(self, challenge: dict[str, str]) -> str:
        """Authorization for the next AUTH under `challenge` (nc counts up per nonce)."""
        if self.username is None or self.password is None:
            raise RelayAuthError(401, "relay asks for credentials; set relay_username "
                                      "and relay_password")
        self._nc += 1
        return authorization(challenge, self.username, self.password, self.relay_uri,
                             nc=self._nc)

    async def _exchange(self, link: LinkCore) -> tuple[list[str], int | None]:
        """AUTH until a 200: answer a 401 with Digest credentials, a 423 with the lifetime
        the relay allows; (Use-Path, granted Expires) of the 200.

        Bounded: credentials answering a fresh challenge and refused again end it (unless
        the relay says the nonce was stale), as do more than `MAX_INTERVAL_RETRIES` 423s
        or `MAX_AUTH_REQUESTS` requests in all.
        """
        credentials: str | None = None
        challenge: dict[str, str] | None = None
        fresh_answer = False  # the last AUTH answered a challenge just received
        intervals = 0
        for _ in range(MAX_AUTH_REQUESTS):
            requested = self.requested_expires
            resp: MSRPResponse = await link.request(
                self._auth_request(credentials, requested), self.timeout)
            if resp.status == 401:
                new = parse_challenge(resp.headers.get("WWW-Authenticate") or "")
                if fresh_answer and new.get("stale", "").lower() != "true":
                    raise RelayAuthError(401, "relay refused our credentials "
                                              "(relay_username / relay_password)")
                challenge = new
                self._nc = 0  # a new nonce: its count starts again
                credentials = self._answer(challenge)
                fresh_answer = True
                continue
            if resp.status == 423:
                intervals += 1
                if intervals > MAX_INTERVAL_RETRIES:
                    raise RelayAuthError(423, f"relay refused {intervals} AUTH lifetimes "
                                              f"in a row (last asked: {requested} s)")
                self.requested_expires = _allowed_interval(resp, requested)
                if challenge is not None:
                    credentials = self._answer(challenge)  # same nonce, next nc
                fresh_answer = False
                continue
            if resp.status != 200:
                raise RelayAuthError(resp.status, resp.comment or "AUTH refused")
            use_path = resp.use_path
            if not use_path:
                raise RelayAuthError(resp.status, "relay's 200 to AUTH has no Use-Path")
            for uri in use_path:
                parse_msrp_uri(uri)
            granted = resp.expires
            if granted is None:
                granted = requested
            return use_path, granted
        raise RelayAuthError(503, f"no 200 to AUTH after {MAX_AUTH_REQUESTS} requests")

    def _succeeded(self, result: tuple[list[str], int | None]) -> None:
        self._busy = False
        if self._stopped:
            return
        use_path, expires = result
        lifetime = float(DEFAULT_EXPIRES if expires is None else expires)
        self.use_path = use_path
        self.expires_at = self.clock.seconds() + lifetime
        self.auth_count += 1
        self._retry = RETRY_FIRST
        log.info("MSRP relay {relay}: authenticated, Use-Path {path}, expires in {t}s",
                 relay=self.relay_uri, path=" ".join(use_path), t=lifetime)
        self._schedule(max(1.0, lifetime * REFRESH_SHARE))
        self._fire(None)

    def _failed(self, failure: Failure) -> None:
        self._busy = False
        if self._stopped:
            return
        exc = failure.value
        if isinstance(exc, RelayAuthError):
            err = exc
        elif isinstance(exc, MSRPSendError):
            err = RelayAuthError(exc.code, exc.comment or "no answer")
        elif isinstance(exc, (MSRPParseError, ValueError)):
            err = RelayAuthError(400, str(exc))
        else:
            err = RelayAuthError(503, failure.getErrorMessage())
        now = self.clock.seconds()
        if self.expires_at is not None and now >= self.expires_at:
            self.use_path = []  # the relay has forgotten us by now
        log.error("MSRP relay {relay}: {why}; retrying in {t}s", relay=self.relay_uri,
                  why=str(err), t=self._retry)
        delay = self._retry
        if self.use_path and self.expires_at is not None:
            delay = min(delay, max(0.5, self.expires_at - now))
        self._schedule(delay)
        self._retry = min(self._retry * 2, RETRY_MAX)
        self._fire(err)

    def _lost(self, reason: str) -> None:
        self.link = None
        self.use_path = []
        if self._stopped:
            return
        log.warn("MSRP relay {relay}: connection lost ({why}); reconnecting",
                 relay=self.relay_uri, why=reason)
        if not self._busy:
            self._schedule(self._retry)
            self._retry = min(self._retry * 2, RETRY_MAX)

    def _schedule(self, delay: float) -> None:
        self._cancel_timer()
        self._timer = self.clock.callLater(delay, self._run)

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _fire(self, error: Exception | None) -> None:
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            if error is None:
                d.callback(None)
            else:
                d.errback(error)
