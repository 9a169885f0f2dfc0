"""
The TLS files in force: the station context, each wss:// upstream's client TLS and
the certificates they hold, read and checked together (L{read_tls_files}), and the
holder (L{TLSFiles}) that new connections ask for them, so that a reload swaps them
whole without touching a connection already open.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from ..config.model import Config
from .certificates import CA, CLIENT, STATION, CertificateInfo, certificates_of, check_in_force, check_some_in_force
from .station_tls import station_tls_options
from .tls import ClientTLS
from .upstream_tls import client_tls_factory, tls_key


@dataclass(frozen=True)
class TLSMaterial:
    """One consistent set of TLS files, read and checked: see L{read_tls_files}."""

    station: ssl.SSLContext | None = None
    upstream: Mapping[str, ClientTLS] = field(default_factory=dict)
    certificates: tuple[CertificateInfo, ...] = ()
    check_client_id: str = "warn"
    """C{station_tls.check_client_id}: swapped with the files, so a reload applies it too."""


def read_tls_files(config: Config, now: float) -> TLSMaterial:
    """
    Read and check every TLS file of C{config} (blocking: call it in a thread once the
    reactor runs): C{station_tls}, C{ca_file} and C{upstream_tls}. Raises a
    L{ConfigError} naming the key, the file and why (L{KeyMismatch} for a key that does
    not match its certificate): a file missing or without PEM data, a key that does not
    match, the certificate the proxy presents (towards stations or an upstream) expired
    or not valid yet at C{now}, a CA file none of whose certificates is valid.
    """
    certificates: list[CertificateInfo] = []
    if config.station_tls is not None:
        settings = config.station_tls
        chain = certificates_of(settings.certificate, "station_tls.certificate", STATION)
        check_in_force(chain[0], "station_tls.certificate", now)
        certificates += chain
        if settings.client_ca_file:
            certificates += _authorities(settings.client_ca_file, "station_tls.client_ca_file", now)
    upstreams = config.named_upstreams
    secure = [name for name, upstream in upstreams.items() if upstream.url.startswith("wss:")]
    if config.ca_file and secure:
        certificates += _authorities(config.ca_file, "ca_file", now)
    for name in secure:
        settings = upstreams[name].tls
        if settings.ca_file:
            certificates += _authorities(settings.ca_file, f"{tls_key(config, name)}.ca_file", now)
        if settings.client_cert:
            key = f"{tls_key(config, name)}.client_cert"
            chain = certificates_of(settings.client_cert, key, CLIENT)
            check_in_force(chain[0], key, now)
            certificates += chain
    # The contexts last: their checks name the key that does not match its certificate.
    station = station_tls_options(config.station_tls) if config.station_tls is not None else None
    upstream = client_tls_factory(config)
    unique = {(info.role, info.file, info.fingerprint): info for info in certificates}
    check = config.station_tls.check_client_id if config.station_tls is not None else "warn"
    return TLSMaterial(station, upstream, tuple(unique.values()), check)


def _authorities(path: str, key: str, now: float) -> list[CertificateInfo]:
    infos = certificates_of(path, key, CA)
    check_some_in_force(infos, key, now)
    return infos


def files_for_reload(running: Config, new: Config) -> Config:
    """
    The configuration whose TLS files a reload reads: C{new}'s, but with the running
    legacy upstream URLs (a changed C{primary_url} waits for a restart, and its host name
    with it; under C{upstreams} a reload applies URLs), the running upstreams when a
    reload switches between the legacy keys and C{upstreams} (a restart), and, when
    C{station_tls} is added or removed (which needs a restart), the running section.
    """
    kept = {"primary_url": running.primary_url, "secondary_url": running.secondary_url}
    if (new.upstreams is None) != (running.upstreams is None):
        kept.update(upstreams=running.upstreams, upstream_tls=running.upstream_tls)
    if (new.station_tls is None) != (running.station_tls is None):
        kept["station_tls"] = running.station_tls
    return replace(new, **kept)


class TLSFiles:
    """
    The TLS in force, asked at each new connection: a station's TLS handshake takes
    L{station_context}, an upstream link's connection attempt L{upstream}. L{swap}
    replaces it whole; connections already open keep what they started with.
    """

    def __init__(self, material: TLSMaterial) -> None:
        self.material = material

    def station_context(self) -> ssl.SSLContext:
        """The server context for the next station's TLS handshake."""
        return self.material.station

    def check_client_id(self) -> str:
        """What a station's client certificate naming another station gets now (refuse, warn or off)."""
        return self.material.check_client_id

    def upstream(self, name: str) -> ClientTLS | None:
        """The client TLS for the next connection attempt to upstream C{name}; None: the system's trust store."""
        return self.material.upstream.get(name)

    @property
    def certificates(self) -> tuple[CertificateInfo, ...]:
        """Every certificate the proxy presents or trusts now."""
        return self.material.certificates

    def swap(self, material: TLSMaterial) -> None:
        """Use C{material} for every new connection from now on."""
        self.material = material
