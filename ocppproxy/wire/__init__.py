"""
The Autobahn/Twisted edges: the station's server protocol and factory, the upstream link
(client protocol, factory, ClientService), handshake limits, backpressure, TLS on both
sides (tls on Python's ssl module; station_tls, upstream_tls, pem for the settings). All
on the stock Autobahn and Twisted paths; the fast frame path (L{ocppproxy.fastpath}) plugs
in where a L{ocppproxy.fastpath.FastPath} is given.

May import: Twisted, Autobahn, L{ocppproxy.core}, L{ocppproxy.logs} and the settings types
of L{ocppproxy.config.model} (and L{ocppproxy.fastpath} for type hints only); never relay,
daemon, notify or status.
"""
