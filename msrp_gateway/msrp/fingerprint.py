"""Certificate fingerprints for MSRP over TLS (RFC 4975 s.14.4, RFC 8122 / RFC 4572).

Sans-IO: a fingerprint is a hash name and a digest of the DER certificate. Peers with
self-signed certificates (RCS/IMS clients) put ``a=fingerprint:sha-256 AB:CD:...`` in their
SDP; the TLS connection that binds their session must present a certificate with that
digest. Parsing raises only `FingerprintError`; a hash we do not know is not an error
(RFC 8122 s.5: the other fingerprints are used), it parses to None.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Iterable

__all__ = [
    "Fingerprint", "FingerprintError", "HASHES", "DEFAULT_HASH", "MAX_FINGERPRINT_LENGTH",
    "certificate_digest", "fingerprint_of", "matching", "parse_fingerprint", "pem_to_der",
]

# RFC 8122 s.5 (IANA "Hash Function Textual Names"): hashlib name and digest length.
# md2/md5 are refused by RFC 8122 and, like any other name, ignored.
HASHES: dict[str, tuple[str, int]] = {
    "sha-1": ("sha1", 20),
    "sha-224": ("sha224", 28),
    "sha-256": ("sha256", 32),
    "sha-384": ("sha384", 48),
    "sha-512": ("sha512", 64),
}
DEFAULT_HASH = "sha-256"  # RFC 8122 s.5: every endpoint computes and checks SHA-256
# "sha-512 " + 64 hex pairs joined by colons is 200 characters; anything longer is garbage.
MAX_FINGERPRINT_LENGTH = 256

# hash-func token (RFC 4572 s.5: token chars; IANA names are lower-case letters, digits, -).
_HASH_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`{|}~-]{1,32}\Z")
_HEX_PAIRS = re.compile(r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2})*\Z")
_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", re.S)


class FingerprintError(ValueError):
    """A fingerprint value that cannot be read; ``reason`` says why in one line."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """A hash name from `HASHES` (lower case) and the certificate digest it names."""

    hash_name: str
    digest: bytes

    def __post_init__(self) -> None:
        known = HASHES.get(self.hash_name)
        if known is None or len(self.digest) != known[1]:
            raise FingerprintError(f"not a {self.hash_name} digest")

    def matches(self, der: bytes) -> bool:
        """Whether the DER certificate `der` has this digest (compared in constant time)."""
        return hmac.compare_digest(certificate_digest(der, self.hash_name), self.digest)

    def __str__(self) -> str:
        """The SDP attribute value: ``sha-256 AB:CD:...`` (upper-case hex, RFC 4572 s.5)."""
        return f"{self.hash_name} {self.digest.hex(':').upper()}"


def certificate_digest(der: bytes, hash_name: str = DEFAULT_HASH) -> bytes:
    """The digest of a DER-encoded certificate with one of `HASHES` (KeyError otherwise)."""
    return hashlib.new(HASHES[hash_name][0], der).digest()


def fingerprint_of(der: bytes, hash_name: str = DEFAULT_HASH) -> Fingerprint:
    """The fingerprint of a DER certificate, as our SDP advertises it."""
    return Fingerprint(hash_name, certificate_digest(der, hash_name))


def parse_fingerprint(value: str) -> Fingerprint | None:
    """Read an ``a=fingerprint`` value (``HASH SP XX:XX:...``, hex in either case).

    None for a well-formed value whose hash we do not know (to be ignored); raises
    `FingerprintError` for anything malformed, including a digest of the wrong length.
    """
    if len(value) > MAX_FINGERPRINT_LENGTH:
        raise FingerprintError(f"a=fingerprint value too long ({len(value)} characters)")
    parts = value.split()
    if len(parts) != 2:
        raise FingerprintError(f"a=fingerprint {value[:60]!r} is not 'HASH XX:XX:...'")
    name, hexes = parts
    if not _HASH_NAME.match(name):
        raise FingerprintError(f"a=fingerprint hash name {name[:40]!r} is not a token")
    if not _HEX_PAIRS.match(hexes):
        raise FingerprintError(f"a=fingerprint digest {hexes[:60]!r} is not colon-separated "
                               "hex pairs")
    name = name.lower()
    known = HASHES.get(name)
    if known is None:
        return None
    digest = bytes.fromhex(hexes.replace(":", ""))
    if len(digest) != known[1]:
        raise FingerprintError(f"a=fingerprint {name} digest has {len(digest)} bytes, "
                               f"expected {known[1]}")
    return Fingerprint(name, digest)


def matching(der: bytes | None, fingerprints: Iterable[Fingerprint]) -> Fingerprint | None:
    """The first of `fingerprints` that `der` matches, or None (also for no certificate)."""
    if der is None:
        return None
    for fp in fingerprints:
        if fp.matches(der):
            return fp
    return None


def pem_to_der(pem: bytes) -> bytes:
    """The DER bytes of the first certificate in a PEM file (FingerprintError if none)."""
    found = _PEM_CERT.search(pem)
    if found is None:
        raise FingerprintError("no PEM certificate found")
    try:
        return base64.b64decode(b"".join(found.group(1).split()), validate=True)
    except (binascii.Error, ValueError):
        raise FingerprintError("the PEM certificate is not valid base64") from None
