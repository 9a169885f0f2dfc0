#!/bin/sh
# Makes sure podman has the Containerfile's base image, python:3.11-slim-bookworm.
# Where no container registry is reachable (CI), a stand-in is built from Debian's own
# packages with debootstrap (Python 3.11 with venv, as the real image has), which needs
# root; elsewhere the real image is pulled.
set -eu
base=docker.io/library/python:3.11-slim-bookworm
if podman image exists "$base"; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v debootstrap >/dev/null; then
    root=$(mktemp -d)
    trap 'rm -rf "$root"' EXIT
    echo "container-base: building a stand-in for $base with debootstrap" >&2
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$root" http://deb.debian.org/debian >/dev/null
    # The host's trust store: a TLS-intercepting egress proxy's CA must reach pip too.
    cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
    tar -C "$root" -c . | podman import --quiet - "$base" >/dev/null
    exit 0
fi
podman pull --quiet "$base" >/dev/null
