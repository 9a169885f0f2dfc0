"""
C{/health}: whether this instance should get stations, for a load balancer's health
check or a container's C{HEALTHCHECK}: 200 while the proxy accepts stations, 503 (with
the reason as text) before it listens and from the moment it starts shutting down. In
cluster mode, Redis away is still 200 (relaying goes on), said in the text: degraded.
"""

from __future__ import annotations

from twisted.web.resource import Resource


class HealthResource(Resource):
    """Answers from C{proxy.accepting} (and C{proxy.ownership}): C{200 ok...} or C{503 <why not>}, never cached."""

    isLeaf = True

    def __init__(self, proxy) -> None:
        super().__init__()
        self._proxy = proxy

    def render_GET(self, request) -> bytes:
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        if self._proxy.accepting:
            ownership = getattr(self._proxy, "ownership", None)
            if ownership is not None and not ownership.redis_up:
                return b"ok, degraded: Redis unreachable, relaying with local state\n"
            return b"ok\n"
        request.setResponseCode(503)
        return b"not accepting stations\n"

    render_HEAD = render_GET
