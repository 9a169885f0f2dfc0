"""Certificates made by the tests themselves: CAs, server certificates for 127.0.0.1, client certificates."""

from __future__ import annotations

import datetime
import ipaddress
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_pem(key: ec.EllipticCurvePrivateKey, password: bytes | None = None) -> bytes:
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def _write(path: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | None = None) -> None:
    """A PEM certificate at C{path}; with C{key}, the key beside it as C{<name>-key.pem}."""
    with open(path, "wb") as out:
        out.write(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        with open(path[: -len(".pem")] + "-key.pem", "wb") as out:
            out.write(_key_pem(key))


def _issue(
    subject: str, issuer: x509.Certificate | None, issuer_key, extensions, days: float = 30
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A certificate for C{subject} signed by C{issuer} (self-signed if None), valid C{days} more days; its key."""
    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer.subject if issuer is not None else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=days))
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(issuer_key if issuer is not None else key, hashes.SHA256()), key


def _ca(name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    return _issue(
        name,
        None,
        None,
        [
            (x509.BasicConstraints(ca=True, path_length=None), True),
            (x509.KeyUsage(False, False, False, False, False, True, True, False, False), True),
        ],
    )


_SERVER_NAMES = x509.SubjectAlternativeName(
    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
)


def make_ca_and_server_cert(directory: str) -> dict[str, str]:
    """Write ca.pem, server.pem and server-key.pem into C{directory}; return their paths."""
    ca, ca_key = _ca("ocppproxy test CA")
    paths = {name: os.path.join(directory, name) for name in ("ca.pem", "server.pem", "server-key.pem")}
    _write(paths["ca.pem"], ca)
    _write(paths["server.pem"], *_issue("127.0.0.1", ca, ca_key, [(_SERVER_NAMES, False)]))
    return paths


def make_proxy_client_cert(directory: str, ca_name: str = "ocppproxy test client CA") -> dict[str, str]:
    """
    For mutual TLS towards an upstream: write proxy-ca.pem, proxy.pem and proxy-key.pem
    (a certificate for the proxy signed by a CA of its own), other-key.pem (a key that
    does not match it) and encrypted-key.pem (proxy.pem's key, encrypted) into
    C{directory}; return their paths. C{ca_name} names the CA (two CAs an upstream
    trusts together need different names).
    """
    ca, ca_key = _ca(ca_name)
    cert, key = _issue("ocppproxy", ca, ca_key, [])
    paths = {
        name: os.path.join(directory, name)
        for name in ("proxy-ca.pem", "proxy.pem", "proxy-key.pem", "other-key.pem", "encrypted-key.pem")
    }
    _write(paths["proxy-ca.pem"], ca)
    _write(paths["proxy.pem"], cert, key)
    with open(paths["other-key.pem"], "wb") as out:
        out.write(_key_pem(ec.generate_private_key(ec.SECP256R1())))
    with open(paths["encrypted-key.pem"], "wb") as out:
        out.write(_key_pem(key, b"passphrase"))
    return paths


def make_station_pki(
    directory: str, station_id: str, days: float = 30, client_dns_names: tuple[str, ...] = ()
) -> dict[str, str]:
    """
    For TLS towards the stations, write into C{directory} and return the paths of:
    ca.pem (the test CA), server.pem and server-key.pem (127.0.0.1 and localhost, from
    that CA, valid C{days} more days), client.pem and client-key.pem (CN C{station_id},
    SAN DNS names C{client_dns_names} if any, from that CA), and other-client.pem and
    other-client-key.pem (CN C{station_id}, from another CA).
    """
    ca, ca_key = _ca("ocppproxy test CA")
    other_ca, other_ca_key = _ca("another test CA")
    client_use = x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH])
    paths = {
        name: os.path.join(directory, name)
        for name in ("ca.pem", "server.pem", "server-key.pem", "client.pem", "client-key.pem")
    }
    paths["other-client.pem"] = os.path.join(directory, "other-client.pem")
    paths["other-client-key.pem"] = os.path.join(directory, "other-client-key.pem")
    _write(paths["ca.pem"], ca)
    _write(paths["server.pem"], *_issue("127.0.0.1", ca, ca_key, [(_SERVER_NAMES, False)], days))
    client_extensions = [(client_use, False)]
    if client_dns_names:
        client_extensions.append((x509.SubjectAlternativeName([x509.DNSName(n) for n in client_dns_names]), False))
    _write(paths["client.pem"], *_issue(station_id, ca, ca_key, client_extensions))
    _write(paths["other-client.pem"], *_issue(station_id, other_ca, other_ca_key, [(client_use, False)]))
    return paths
