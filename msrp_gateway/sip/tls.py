"""TLS context factories for ``tls:`` listeners and outbound connections, from the
``[tls]`` settings (PEM paths). Unusable files raise ``TransportError`` with the path."""

from __future__ import annotations

from typing import Any

from twisted.internet import ssl

from .peers import TransportError

__all__ = ["client_options", "server_options", "verifying_client_options"]


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise TransportError(f"cannot read the TLS {what} {path!r}: {e.strerror}") from None


def _has_own_certificate(settings: Any) -> bool:
    return settings is not None and bool(getattr(settings, "certificate", "")) and \
        bool(getattr(settings, "private_key", ""))


def _verifies(settings: Any) -> bool:
    return settings is not None and bool(getattr(settings, "verify_peers", False)) and \
        bool(getattr(settings, "ca_certificates", ""))


def _own_certificate(settings: Any) -> ssl.PrivateCertificate:
    pem = _read(settings.certificate, "certificate") + b"\n" + \
        _read(settings.private_key, "private key")
    cert: ssl.PrivateCertificate = ssl.PrivateCertificate.loadPEM(  # type: ignore[no-untyped-call]
        pem)  # Twisted leaves loadPEM unannotated
    return cert


def server_options(settings: Any) -> Any:
    """CertificateOptions for ``tls:`` listeners; with ``verify_peers`` clients must
    present a certificate that chains to ``ca_certificates``."""
    if not _has_own_certificate(settings):
        raise TransportError("tls: sockets need [tls] certificate and private_key")
    cert = _own_certificate(settings)
    if not _verifies(settings):
        return cert.options()  # type: ignore[no-untyped-call]  # Twisted leaves it unannotated
    return ssl.CertificateOptions(privateKey=cert.privateKey.original, certificate=cert.original,
                                  verify=True, caCerts=_load_cas(settings.ca_certificates),
                                  requireCertificate=True)


def client_options(settings: Any) -> Any:
    """Client options: verify the server against ``ca_certificates`` when ``verify_peers``
    is set, else encrypt without verification (SIP peers often use self-signed certs)."""
    kwargs: dict[str, Any] = {}
    if _has_own_certificate(settings):
        cert = _own_certificate(settings)
        kwargs["privateKey"] = cert.privateKey.original
        kwargs["certificate"] = cert.original
    if _verifies(settings):
        kwargs.update(verify=True, caCerts=_load_cas(settings.ca_certificates))
    return ssl.CertificateOptions(**kwargs)


def verifying_client_options(settings: Any, hostname: str) -> Any:
    """optionsForClientTLS: chain to ``ca_certificates`` and the name (DNS or IP SAN)."""
    cas = [ssl.Certificate(c)  # type: ignore[no-untyped-call]  # Twisted is untyped here
           for c in _load_cas(settings.ca_certificates)]
    client_cert = _own_certificate(settings) if _has_own_certificate(settings) else None
    trust = ssl.trustRootFromCertificates(cas)  # type: ignore[no-untyped-call]  # Twisted
    return ssl.optionsForClientTLS(hostname, trustRoot=trust, clientCertificate=client_cert)


def _load_cas(path: str) -> list[Any]:
    from OpenSSL import crypto

    data = _read(path, "CA bundle")
    cas = []
    marker = b"-----END CERTIFICATE-----"
    for chunk in data.split(marker):
        if b"-----BEGIN CERTIFICATE-----" in chunk:
            cas.append(crypto.load_certificate(crypto.FILETYPE_PEM, chunk + marker))
    if not cas:
        raise TransportError(f"no certificate in the CA bundle {path!r}")
    return cas
