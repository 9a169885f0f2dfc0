"""
The Autobahn/Twisted edges: the station's server protocol and factory, the upstream link
(client protocol, factory, ClientService), handshake limits, backpressure, TLS on both
sides (tls on Python's ssl module; station_tls, upstream_tls, pem for the settings) and
the fast frame path (internals, wsframes).

May import: Twisted, Autobahn, L{ocppproxy.core}, L{ocppproxy.logs} and the settings types
of L{ocppproxy.config.model}; never relay, daemon, notify or status.
"""
