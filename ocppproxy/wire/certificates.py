"""
The certificates of the TLS files the configuration names: what each holds (subject,
validity, fingerprint) and the checks a renewed file must pass before it is used.
Every problem is a L{ConfigError} naming the key, the file and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from ..config.model import ConfigError
from .pem import certificate_blocks

STATION, CLIENT, CA = "station", "client", "ca"
"""Roles: the proxy's certificate towards stations, its client certificate towards an upstream, a trusted CA."""


class KeyMismatch(ConfigError):
    """A private key that does not match its certificate: perhaps a renewal still being written."""


@dataclass(frozen=True)
class CertificateInfo:
    """One certificate of a file: its C{role}, the C{file}, subject, validity (POSIX times) and SHA-256 fingerprint."""

    role: str
    file: str
    subject: str
    not_before: float
    not_after: float
    fingerprint: str


def certificates_of(path: str, key: str, role: str) -> list[CertificateInfo]:
    """Every certificate of the PEM file C{path}, in file order; a L{ConfigError} naming C{key} if there is none."""
    infos = []
    for block in certificate_blocks(path, key):
        try:
            certificate = x509.load_pem_x509_certificate(block)
        except ValueError:
            raise ConfigError(key, f"a certificate in {path} cannot be read") from None
        infos.append(
            CertificateInfo(
                role,
                path,
                certificate.subject.rfc4514_string(),
                certificate.not_valid_before_utc.timestamp(),
                certificate.not_valid_after_utc.timestamp(),
                certificate.fingerprint(hashes.SHA256()).hex(),
            )
        )
    if not infos:
        raise ConfigError(key, f"no PEM certificate in {path}")
    return infos


def check_in_force(info: CertificateInfo, key: str, now: float) -> None:
    """A L{ConfigError} naming C{key} and the file if C{info} has expired or is not valid yet at C{now}."""
    if now >= info.not_after:
        raise ConfigError(key, f"the certificate in {info.file} ({info.subject}) expired on {utc_date(info.not_after)}")
    if now < info.not_before:
        raise ConfigError(
            key, f"the certificate in {info.file} ({info.subject}) is not valid before {utc_date(info.not_before)}"
        )


def check_some_in_force(infos: list[CertificateInfo], key: str, now: float) -> None:
    """A L{ConfigError} if no certificate of a CA file is valid at C{now} (one expired CA in a bundle is fine)."""
    if not any(info.not_before <= now < info.not_after for info in infos):
        raise ConfigError(key, f"no certificate in {infos[0].file} is valid now (expired or not valid yet)")


def utc_date(seconds: float) -> str:
    """A POSIX time as C{2026-11-25 12:00 UTC}."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M UTC")
