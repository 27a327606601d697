"""Throw-away TLS files for tests: a CA and a server certificate it signed.

One helper for every TLS test (SIP, MSRP, UA) so they all exercise the same kind of chain a
deployment has (leaf signed by a CA, not a self-signed leaf), and peer verification can be
tested both ways: the certificate names 127.0.0.1, ::1 and localhost and nothing else.

    from tests.tlscerts import make_certs
    certs = make_certs(tmp_path)          # TLSCerts with PEM file paths as str
    settings = TLSSettings(certificate=certs.certificate, private_key=certs.private_key,
                           ca_certificates=certs.ca_certificates)
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_NAMES = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True, slots=True)
class TLSCerts:
    """PEM file paths; field names match the ``[tls]`` settings so it can stand in for them."""
    certificate: str       # the server (and client) certificate, signed by the CA
    private_key: str       # its key, PKCS#8, unencrypted
    ca_certificates: str   # the CA certificate: what a verifying peer trusts
    ca_key: str            # the CA's key, to sign more certificates in a test if needed
    verify_peers: bool = False


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _san(names: tuple[str, ...]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


def make_certs(directory: str | Path, names: tuple[str, ...] = DEFAULT_NAMES) -> TLSCerts:
    """Write ca.pem, ca-key.pem, cert.pem and key.pem into ``directory`` (created if needed).

    The leaf is valid for a day either side of now, names exactly ``names`` (IP addresses
    as iPAddress entries, the rest as dNSName) and may serve as server and as client.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    before, after = now - datetime.timedelta(days=1), now + datetime.timedelta(days=1)

    ca_key = _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "msrpgw test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(before).not_valid_after(after)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False,
                                       decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))

    key = _key()
    leaf_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    leaf = (x509.CertificateBuilder().subject_name(leaf_name).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(before).not_valid_after(after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_san(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))

    paths = {n: d / n for n in ("ca.pem", "ca-key.pem", "cert.pem", "key.pem")}
    paths["ca.pem"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    _write_key(paths["ca-key.pem"], ca_key)
    paths["cert.pem"].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    _write_key(paths["key.pem"], key)
    return TLSCerts(certificate=str(paths["cert.pem"]), private_key=str(paths["key.pem"]),
                    ca_certificates=str(paths["ca.pem"]), ca_key=str(paths["ca-key.pem"]))
