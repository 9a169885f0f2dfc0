"""PEM files named in the configuration, read once at start-up; a problem is a L{ConfigError} naming the key."""

from __future__ import annotations

from ..config.model import ConfigError

_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"


def read_pem_file(path: str, key: str) -> bytes:
    """The bytes of C{path}; C{key} (the configuration key naming it) names a read error."""
    try:
        with open(path, "rb") as stream:
            return stream.read()
    except OSError as error:
        raise ConfigError(key, f"cannot read {path}: {error.strerror}") from None


def certificate_blocks(path: str, key: str) -> list[bytes]:
    """Each PEM certificate of C{path}, in file order, as its own PEM text (possibly none)."""
    return [_CERTIFICATE + block for block in read_pem_file(path, key).split(_CERTIFICATE)[1:]]
