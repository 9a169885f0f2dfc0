"""
TLS towards the stations on a plain listen endpoint (OCPP security profiles 2 and 3):
the server-side TLS context from the C{station_tls} section, the wrapping of the
station factory (L{ocppproxy.wire.tls}), and the names of a station's client
certificate.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING

from cryptography import x509
from OpenSSL import SSL, crypto
from twisted.internet.interfaces import IProtocolFactory, ISSLTransport
from twisted.internet.ssl import Certificate, CertificateOptions, KeyPair

from ..config.model import ConfigError, StationTLS
from .certificates import KeyMismatch
from .pem import certificate_blocks, read_pem_file
from .tls import TLS_FLOOR, TLSConnection, TLSServerFactory, common_name

if TYPE_CHECKING:
    from ..fastpath import FastPath


def _certificates(key: str, path: str) -> list[Certificate]:
    """Every certificate of a PEM file, in file order."""
    blocks = certificate_blocks(path, key)
    try:
        certificates = [Certificate.loadPEM(block) for block in blocks]
    except crypto.Error:
        certificates = []
    if not certificates:
        raise ConfigError(key, f"no PEM certificate in {path}")
    return certificates


def station_tls_options(settings: StationTLS) -> ssl.SSLContext:
    """
    The proxy's TLS server context: its certificate (the file's further certificates
    are sent as the chain) and key; with C{client_ca_file}, a station must present a
    client certificate signed by one of that file's CAs, or the TLS handshake fails.
    Reads and checks every file now: raises L{ConfigError} naming the key.
    """
    _check_files(settings)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = TLS_FLOOR
    # A station may not make the proxy renegotiate (a TLS 1.2 CPU sink; OpenSSL 3 refuses by default, 1.1.1 not).
    context.options |= ssl.OP_NO_RENEGOTIATION
    try:
        context.load_cert_chain(settings.certificate, settings.private_key)
        if settings.client_ca_file:
            context.load_verify_locations(cafile=settings.client_ca_file)
    except (OSError, ssl.SSLError) as error:
        # The files were read and matched above: only a change since then gets here.
        raise ConfigError("station_tls", f"cannot be used: {error}") from None
    if settings.client_ca_file:
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _check_files(settings: StationTLS) -> None:
    """
    Each file of C{settings} read and checked, so that a problem is named by its key
    (the C{ssl} module's own errors do not say which file): a PEM certificate, a PEM key
    that matches it (pyOpenSSL's context says whether it does), PEM CA certificates.
    """
    chain = _certificates("station_tls.certificate", settings.certificate)
    try:
        key = KeyPair.load(read_pem_file(settings.private_key, "station_tls.private_key"), crypto.FILETYPE_PEM)
    except crypto.Error:
        raise ConfigError("station_tls.private_key", f"no PEM private key in {settings.private_key}") from None
    authorities = []
    if settings.client_ca_file:
        authorities = [c.original for c in _certificates("station_tls.client_ca_file", settings.client_ca_file)]
    options = CertificateOptions(
        privateKey=key.original,
        certificate=chain[0].original,
        extraCertChain=[certificate.original for certificate in chain[1:]],
        verify=bool(authorities),
        caCerts=authorities or None,
        requireCertificate=bool(authorities),
    )
    try:
        options.getContext()
    except SSL.Error:
        raise KeyMismatch(
            "station_tls.private_key",
            f"{settings.private_key} does not match the certificate in {settings.certificate}",
        ) from None


def wrap_station_factory(
    factory: IProtocolFactory,
    context: ssl.SSLContext | Callable[[], ssl.SSLContext],
    fast_path: FastPath | None = None,
) -> TLSServerFactory:
    """
    C{factory} behind TLS: each station's TLS handshake comes before its WebSocket one;
    C{context} may be a function, asked at each new connection. With C{fast_path}, TLS's
    output goes out through it (see L{TLSConnection}).
    """
    return TLSServerFactory(context, factory, fast_path)


def client_certificate_names(transport) -> tuple[str, tuple[str, ...]] | None:
    """
    The subject CN ("" without one) and the SAN DNS names of the client certificate a
    TLS station presented; None without one (or without TLS).
    """
    if isinstance(transport, TLSConnection):
        certificate = transport.peer_certificate()
        if not certificate:
            return None
        names = tuple(value for kind, value in certificate.get("subjectAltName", ()) if kind == "DNS")
        return common_name(certificate) or "", names
    # An ssl: listen endpoint: Twisted's TLS.
    if not ISSLTransport.providedBy(transport):
        return None
    certificate = transport.getPeerCertificate()
    if certificate is None:
        return None
    try:
        extension = certificate.to_cryptography().extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = tuple(extension.value.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = ()
    return certificate.get_subject().commonName or "", names
