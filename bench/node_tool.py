"""
The Node tool ocppproxy replaces (OCPP-Proxy-Alert, Node ``ws``) as a row of the bench.

Nothing of it is in this repository (it is GPL-3.0): at run time its directory
``../shared/anchors/ocpp-proxy-alert`` (beside the checkout, or ``--node-tool DIR``) is
copied into the bench's work directory, ``npm ci --omit=dev`` installs its dependencies
there, and a ``config/config.dev.json`` (which it reads before ``config.json``) points it
at the bench's central systems, with every notification off. Without ``node``, ``npm``,
the directory or the package registry the row is skipped, saying why.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DIRECTORY = os.path.join(os.path.dirname(os.path.dirname(HERE)), "shared", "anchors", "ocpp-proxy-alert")
NPM_TIMEOUT = 300.0


class Unavailable(Exception):
    """The Node tool cannot run here; the message says why."""


def node_config(port: int, primary: str, secondary: str) -> dict:
    """Its configuration: listen on 127.0.0.1:C{port}, both central systems, warnings only, no alert."""
    return {
        "logLevel": "warn",
        "primaryUrl": primary,
        "secondaryUrl": secondary,
        "proxy": {"host": "127.0.0.1", "port": port},
        "notify": {},
    }


def prepare(source: str, workdir: str) -> str:
    """
    A runnable copy of the Node tool at C{source} in C{workdir}: its directory. Raises
    L{Unavailable} naming what is missing (node, npm, the directory, the registry).
    """
    for program in ("node", "npm"):
        if shutil.which(program) is None:
            raise Unavailable(f"{program} not installed")
    if not os.path.isfile(os.path.join(source, "package-lock.json")):
        raise Unavailable(f"no Node tool in {source} (--node-tool DIR)")
    copy = os.path.join(workdir, "node-tool")
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("node_modules", ".git"))
    try:
        installed = subprocess.run(
            ["npm", "ci", "--omit=dev", "--no-audit", "--no-fund"],
            cwd=copy,
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT,
        )
    except subprocess.TimeoutExpired as error:
        raise Unavailable(f"npm ci took more than {NPM_TIMEOUT:.0f} s (package registry unreachable?)") from error
    if installed.returncode != 0:
        last = (installed.stderr.strip().splitlines() or ["no output"])[-1]
        raise Unavailable(f"npm ci failed (package registry unreachable?): {last}")
    return copy


def write_config(directory: str, port: int, primary: str, secondary: str) -> None:
    """Point the copy in C{directory} at C{primary} and C{secondary}, listening on C{port}."""
    with open(os.path.join(directory, "config", "config.dev.json"), "w") as stream:
        json.dump(node_config(port, primary, secondary), stream, indent=2)
