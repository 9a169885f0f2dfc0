"""
TLS towards wss:// central systems (OCPP security profiles 2 and 3): which CA each
upstream's certificate must chain to, and the client certificate the proxy presents.
Read at start-up and at each reload (see L{ocppproxy.wire.tls_files}); a problem is a
L{ConfigError} naming the key.
"""

from __future__ import annotations

import ssl
from urllib.parse import urlsplit

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from OpenSSL import crypto
from twisted.internet.error import VerifyError
from twisted.internet.ssl import (
    Certificate,
    KeyPair,
    PrivateCertificate,
    trustRootFromCertificates,
)

from ..config.model import Config, ConfigError
from .certificates import KeyMismatch
from .pem import certificate_blocks, read_pem_file
from .tls import ClientTLS, client_context


def trust_root_from_pem_file(path: str, key: str = "ca_file"):
    """A trust root with every certificate in a PEM file (a CA bundle may hold several); C{key} names it in errors."""
    blocks = certificate_blocks(path, key)
    if not blocks:
        raise ConfigError(key, f"no PEM certificate in {path}")
    try:
        return trustRootFromCertificates([Certificate.loadPEM(block) for block in blocks])
    except crypto.Error:
        raise ConfigError(key, f"a certificate in {path} cannot be read") from None


def client_certificate_from_pem_files(cert_path: str, key_path: str, key: str) -> PrivateCertificate:
    """
    The proxy's client certificate: the first certificate of C{cert_path} with the
    unencrypted PEM private key of C{key_path}, which must match it. C{key} (the
    configuration key of the pair) names any problem.
    """
    blocks = certificate_blocks(cert_path, f"{key}.client_cert")
    if not blocks:
        raise ConfigError(f"{key}.client_cert", f"no PEM certificate in {cert_path}")
    try:
        certificate = Certificate.loadPEM(blocks[0])
    except crypto.Error:
        raise ConfigError(f"{key}.client_cert", f"the certificate in {cert_path} cannot be read") from None
    pem = read_pem_file(key_path, f"{key}.client_key")
    try:
        # cryptography refuses an encrypted key; pyOpenSSL would ask for its passphrase on the terminal.
        private_key = crypto.PKey.from_cryptography_key(load_pem_private_key(pem, password=None))
    except (ValueError, TypeError, crypto.Error, UnsupportedAlgorithm):
        raise ConfigError(f"{key}.client_key", f"{key_path} is not an unencrypted PEM private key") from None
    try:
        return PrivateCertificate.fromCertificateAndKeyPair(certificate, KeyPair(private_key))
    except VerifyError:
        raise KeyMismatch(f"{key}.client_key", f"{key_path} does not match the certificate in {cert_path}") from None


def client_tls_factory(config: Config) -> dict[str, ClientTLS]:
    """
    The TLS client settings of each wss:// upstream, by upstream name: certificates
    verified against the upstream's C{tls} C{ca_file} (C{upstream_tls} with the legacy
    keys), else the top-level C{ca_file}, else the system trust store, and the host name
    checked; the proxy's client certificate where its C{tls} gives one. Reads the files now (each is
    checked first, so that a problem names its key); raises L{ConfigError}.
    """
    if config.ca_file:
        trust_root_from_pem_file(config.ca_file)
    contexts: dict[tuple[str | None, str | None, str | None], ssl.SSLContext] = {}
    options = {}
    for name, upstream in config.named_upstreams.items():
        url = upstream.url
        if not url.startswith("wss:"):
            continue
        settings = upstream.tls
        key = tls_key(config, name)
        ca_file = config.ca_file
        if settings.ca_file:
            trust_root_from_pem_file(settings.ca_file, f"{key}.ca_file")
            ca_file = settings.ca_file
        if settings.client_cert:
            client_certificate_from_pem_files(settings.client_cert, settings.client_key, key)
        # Upstreams with the same files share one context (each costs a read of the trust store).
        files = (ca_file, settings.client_cert, settings.client_key)
        if files not in contexts:
            contexts[files] = _client_context(key, *files)
        options[name] = ClientTLS(contexts[files], urlsplit(url).hostname)
    return options


def tls_key(config: Config, name: str) -> str:
    """The configuration key of upstream C{name}'s TLS section: under C{upstreams}, or C{upstream_tls}."""
    return f"upstreams.{name}.tls" if config.upstreams is not None else f"upstream_tls.{name}"


def _client_context(key: str, ca_file: str | None, client_cert: str | None, client_key: str | None) -> ssl.SSLContext:
    try:
        context = client_context(ca_file)
        if client_cert:
            context.load_cert_chain(client_cert, client_key)
    except (OSError, ssl.SSLError) as error:
        # The files were read and checked just before: only a change since then gets here.
        raise ConfigError(key, f"cannot be used: {error}") from None
    return context
