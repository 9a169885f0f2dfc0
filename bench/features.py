"""
What each switch of ocppproxy costs, for ``bench/run.py`` and the table in
``docs/explanation/performance.rst``: each feature is the plain closed loop's
configuration with one switch on. Phase ``features`` runs a closed-loop row per feature
in the interleaved rounds (CPU per call as a multiple of plain ocppproxy's, round by
round); phase ``scale-features`` holds ``--feature-scale`` idle stations through plain
ocppproxy and through each feature (KiB of RSS per station).

``cluster`` starts a ``redis-server`` of its own (skipped, saying why, without one) and
counts its CPU with the proxy's: what cluster mode costs includes what Redis does for
it. TLS towards the central systems alone is not measured here; ``proxy-tls`` is TLS on
both sides. The durable outbox's switches (``outbox``, ``mirror-down``,
``outbox-mirror-down``) are phase ``outbox``'s rows (see ``outbox_bench.py``), and can be
named in ``--features`` too.
"""

from __future__ import annotations

import os
import socket
import tempfile
from dataclasses import dataclass


def dead_port() -> int:
    """A loopback port nobody listens on (bound, then let go): a mirror that is down."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class Feature:
    """One switch: its YAML (given the work directory and the central systems' ports) and its links per station."""

    name: str
    description: str
    log_level: str = "warn"
    primary_links: int = 1
    """Upstream links per station to the primary central system (the third upstream goes there too)."""
    stations_tls: bool = False
    """Stations connect on wss:// (the bench's test CA signs the proxy's certificate)."""
    outbox: bool = False
    """The durable outbox on (a directory of its own in the work directory)."""
    mirror_down: bool = False
    """The secondary (the mirror) is a port nobody listens on: its frames wait (in memory, or in the outbox)."""
    redis: bool = False
    """Needs a redis-server of its own (cluster mode): C{yaml} is given its port."""

    def yaml(
        self,
        workdir: str,
        primary_port: int,
        secondary_port: int,
        certs: dict[str, str] | None = None,
        redis_port: int | None = None,
    ) -> str:
        """
        The configuration lines this feature adds to the plain closed loop's (the traffic
        log's and the outbox's directories made); C{certs}, the test CA's files
        (tests/certs.py) for stations_tls; C{redis_port}, its redis-server's for cluster.
        """
        if self.stations_tls:
            return f'station_tls: {{certificate: "{certs["server.pem"]}", private_key: "{certs["server-key.pem"]}"}}\n'
        if self.outbox or self.mirror_down:
            lines = ""
            if self.mirror_down:
                lines += f'primary_url: "ws://127.0.0.1:{primary_port}/"\n'
                lines += f'secondary_url: "ws://127.0.0.1:{dead_port()}/"\n'
            if self.outbox:
                lines += f'outbox: {{directory: "{tempfile.mkdtemp(prefix=f"{self.name}-", dir=workdir)}"}}\n'
            return lines

        if self.name == "traffic-log":
            directory = os.path.join(workdir, "traffic")
            os.makedirs(directory, exist_ok=True)
            return f'traffic_log: {{directory: "{directory}"}}\n'
        if self.name == "api-history":
            return "api: {history: 200}\n"
        if self.name == "cluster":
            return f'cluster: {{redis_url: "redis://127.0.0.1:{redis_port}/0", instance: "bench"}}\n'
        if self.name == "three-upstreams":
            # The third upstream is the primary central system again, under another station id.
            return (
                "upstreams:\n"
                f'  a: {{url: "ws://127.0.0.1:{primary_port}/"}}\n'
                f'  b: {{url: "ws://127.0.0.1:{secondary_port}/"}}\n'
                f'  c: {{url: "ws://127.0.0.1:{primary_port}/", station_id: "C-{{station_id}}"}}\n'
                'routes: [{stations: ["*"], primary: a, mirrors: [b, c]}]\n'
            )
        return ""

    @property
    def upstream_urls(self) -> bool:
        """Whether the plain configuration's primary_url and secondary_url stay (not with upstreams)."""
        return self.name != "three-upstreams" and not self.mirror_down


FEATURES = {
    feature.name: feature
    for feature in (
        Feature("debug", "log_level: debug (the log written to a file)", log_level="debug"),
        Feature("traffic-log", "traffic_log on (every frame written to a file)"),
        Feature("three-upstreams", "upstreams a, b, c: one primary, two mirrors", primary_links=2),
        Feature("tls-stations", "station_tls on (stations on wss://), plain upstreams", stations_tls=True),
        Feature("outbox", "the durable outbox on, the mirror connected", outbox=True),
        Feature("mirror-down", "no outbox, the mirror down (its frames in the memory queue)", mirror_down=True),
        Feature("outbox-mirror-down", "the durable outbox on, the mirror down", outbox=True, mirror_down=True),
        Feature("api-history", "api: {history: 200}, the frame history of every station"),
        Feature("cluster", "cluster mode with a redis-server of its own (its CPU counted)", redis=True),
    )
}


def chosen(names: str) -> list[Feature]:
    """The features named in C{names} (comma-separated); SystemExit naming an unknown one."""
    features = []
    for name in filter(None, names.split(",")):
        if name not in FEATURES:
            raise SystemExit(f"bench: --features: no feature {name!r} (known: {', '.join(FEATURES)})")
        features.append(FEATURES[name])
    return features
