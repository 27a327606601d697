"""a=fingerprint for msrps (RFC 8122, RFC 4975 s.14.4): digests, parsing, SDP in and out."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from hypothesis import given
from hypothesis import strategies as st

from msrp_gateway import sdp
from msrp_gateway.msrp.fingerprint import (
    HASHES,
    Fingerprint,
    FingerprintError,
    certificate_digest,
    fingerprint_of,
    matching,
    parse_fingerprint,
    pem_to_der,
)
from msrp_gateway.sdp import SDPError
from tests.tlscerts import make_certs

CRYPTO_HASHES = {"sha-1": hashes.SHA1(), "sha-224": hashes.SHA224(), "sha-256": hashes.SHA256(),
                 "sha-384": hashes.SHA384(), "sha-512": hashes.SHA512()}


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    certs = make_certs(tmp_path_factory.mktemp("fp"))
    with open(certs.certificate, "rb") as f:
        pem = f.read()
    return certs.certificate, pem, x509.load_pem_x509_certificate(pem)


# ------------------------------------------------------------------ digests


@pytest.mark.parametrize("name", sorted(HASHES))
def test_digest_equals_cryptographys_certificate_fingerprint(cert, name):
    _, pem, c = cert
    der = pem_to_der(pem)
    assert der == c.public_bytes(serialization.Encoding.DER)
    assert certificate_digest(der, name) == c.fingerprint(CRYPTO_HASHES[name])


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl command not installed")
def test_sha256_fingerprint_string_is_what_openssl_x509_prints(cert):
    path, pem, _ = cert
    out = subprocess.run(["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", path],
                         capture_output=True, text=True, check=True).stdout
    # "sha256 Fingerprint=AB:CD:..." (older releases: "SHA256 Fingerprint=")
    expected = out.strip().split("=", 1)[1]
    assert str(fingerprint_of(pem_to_der(pem))) == f"sha-256 {expected}"


def test_pem_without_certificate_is_a_fingerprint_error():
    with pytest.raises(FingerprintError):
        pem_to_der(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with pytest.raises(FingerprintError):
        pem_to_der(b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n")


def test_matching_finds_the_fingerprint_of_the_certificate_and_refuses_others(cert):
    der = pem_to_der(cert[1])
    right = fingerprint_of(der, "sha-384")
    wrong = Fingerprint("sha-256", bytes(32))
    assert matching(der, [wrong, right]) == right
    assert matching(der, [wrong]) is None
    assert matching(None, [right]) is None  # no certificate presented


# ------------------------------------------------------------------ parsing values


def test_parse_is_case_insensitive_and_prints_upper_case():
    value = "SHA-256 " + ":".join(["ab"] * 32)
    fp = parse_fingerprint(value)
    assert fp == Fingerprint("sha-256", bytes([0xAB]) * 32)
    assert str(fp) == "sha-256 " + ":".join(["AB"] * 32)


def test_unknown_hash_names_parse_to_none():
    assert parse_fingerprint("md5 " + ":".join(["00"] * 16)) is None
    assert parse_fingerprint("sha3-256 " + ":".join(["00"] * 32)) is None


@pytest.mark.parametrize("value", [
    "",
    "sha-256",
    "sha-256 AB:CD extra",
    "sha-256 " + ":".join(["AB"] * 31),  # one byte short
    "sha-1 " + ":".join(["AB"] * 21),  # one byte long
    "sha-256 " + "AB" * 32,  # no colons
    "sha-256 " + ":".join(["AG"] * 32),  # not hex
    "sha-256 :" + ":".join(["AB"] * 32),
    "sha(256) " + ":".join(["AB"] * 32),  # not a token
    "sha-512 " + ":".join(["AB"] * 200),  # over the length bound
])
def test_malformed_values_raise_fingerprint_error_only(value):
    with pytest.raises(FingerprintError) as e:
        parse_fingerprint(value)
    assert e.value.reason


@given(st.text(max_size=300))
def test_parse_never_raises_anything_but_its_own_error(text):
    try:
        fp = parse_fingerprint(text)
    except FingerprintError:
        return
    assert fp is None or fp.hash_name in HASHES


@given(st.sampled_from(sorted(HASHES)), st.binary(min_size=64, max_size=64))
def test_str_and_parse_round_trip(name, raw):
    fp = Fingerprint(name, raw[: HASHES[name][1]])
    assert parse_fingerprint(str(fp)) == fp
    assert parse_fingerprint(str(fp).lower()) == fp


# ------------------------------------------------------------------ SDP


FP256 = Fingerprint("sha-256", bytes(range(32)))
FP1 = Fingerprint("sha-1", bytes(range(20)))


def offer(extra_media: str = "", extra_session: str = "", proto: str = "TCP/TLS/MSRP",
          scheme: str = "msrps") -> bytes:
    lines = ["v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1", "t=0 0"]
    lines += [x for x in extra_session.split("\n") if x]
    lines += [f"m=message 7394 {proto} *", "a=accept-types:text/plain",
              f"a=path:{scheme}://192.0.2.1:7394/peer1;tcp", "a=setup:actpass"]
    lines += [x for x in extra_media.split("\n") if x]
    return ("\r\n".join(lines) + "\r\n").encode()


def peer_of(body: bytes) -> sdp.MSRPMedia:
    return sdp.find_msrp_media(sdp.parse_sdp(body))


def test_media_level_fingerprints_are_read_several_and_in_order():
    body = offer(f"a=fingerprint:{FP256}\na=fingerprint:{str(FP1).lower()}")
    assert peer_of(body).fingerprints == [FP256, FP1]


def test_session_level_fingerprint_applies_when_the_stream_has_none():
    assert peer_of(offer(extra_session=f"a=fingerprint:{FP1}")).fingerprints == [FP1]


def test_media_level_fingerprint_replaces_the_session_level_one():
    body = offer(f"a=fingerprint:{FP256}", extra_session=f"a=fingerprint:{FP1}")
    assert peer_of(body).fingerprints == [FP256]


def test_unknown_hash_is_ignored_beside_a_usable_one_and_alone():
    md5 = "md5 " + ":".join(["00"] * 16)
    media = peer_of(offer(f"a=fingerprint:{md5}\na=fingerprint:{FP256}"))
    assert media.fingerprints == [FP256]
    assert media.ignored_fingerprints == ["unknown hash 'md5'"]
    alone = peer_of(offer(f"a=fingerprint:{md5}"))
    assert alone.fingerprints == [] and alone.ignored_fingerprints


def test_an_offer_whose_only_fingerprints_are_malformed_is_refused_488():
    with pytest.raises(SDPError) as e:
        peer_of(offer("a=fingerprint:sha-256 ZZ:ZZ\na=fingerprint:sha-1"))
    assert e.value.code == 488
    assert "a=fingerprint" in e.value.reason
    assert e.value.warning().startswith("305 msrpgw ")
    with pytest.raises(SDPError):
        sdp.build_answer(offer("a=fingerprint:sha-256 12:34"),
                         ["msrps://127.0.0.1:2855/ours;tcp"], ["text/plain"])


def test_a_malformed_fingerprint_beside_a_usable_one_is_dropped_not_fatal():
    media = peer_of(offer(f"a=fingerprint:sha-256 12:34\na=fingerprint:{FP256}"))
    assert media.fingerprints == [FP256]
    assert len(media.ignored_fingerprints) == 1


def test_fingerprints_on_a_plain_tcp_stream_are_not_read():
    body = offer("a=fingerprint:garbage", proto="TCP/MSRP", scheme="msrp")
    assert peer_of(body).fingerprints == []


def test_too_many_fingerprint_lines_are_refused():
    many = "\n".join(f"a=fingerprint:{FP256}" for _ in range(sdp.MAX_FINGERPRINTS + 1))
    with pytest.raises(SDPError):
        peer_of(offer(many))


def test_tls_offer_carries_our_fingerprint_and_the_peer_reads_it_back():
    body = sdp.build_offer(["msrps://127.0.0.1:2856/abc;tcp"], ["text/plain"],
                           fingerprints=[FP256])
    assert f"a=fingerprint:{FP256}\r\n".encode() in body
    assert peer_of(body).fingerprints == [FP256]


def test_plain_tcp_offer_carries_no_fingerprint():
    body = sdp.build_offer(["msrp://127.0.0.1:2855/abc;tcp"], ["text/plain"],
                           fingerprints=[FP256])
    assert b"fingerprint" not in body


def test_tls_answer_carries_our_fingerprint_and_keeps_the_peers():
    theirs = Fingerprint("sha-512", bytes(64))
    neg = sdp.build_answer(offer(f"a=fingerprint:{theirs}"), ["msrps://127.0.0.1:2856/x;tcp"],
                           ["text/plain"], fingerprints=[str(FP256)])
    assert neg.peer.fingerprints == [theirs]
    media = sdp.parse_sdp(neg.body).media[0]
    assert [v for k, v in media.attributes if k == "fingerprint"] == [str(FP256)]
    peer, _, _ = sdp.read_answer(neg.body, ["text/plain"], sdp.PROTO_TLS)
    assert peer.fingerprints == [FP256]


def test_an_answer_whose_only_fingerprint_is_malformed_is_unusable():
    answer = offer("a=fingerprint:sha-256 nothex")
    with pytest.raises(SDPError):
        sdp.read_answer(answer, ["text/plain"], sdp.PROTO_TLS)
