"""
The pure OCPP-J core: frames, routing decisions, station-bound calls, failover answers,
transaction-id translation, forwarded headers, upstream credentials, the handshake checks,
the bounded frame queue and the observer interface. No I/O and no clock of its own: time is
passed in. L{routes.RouteTable} tells which route (one primary, mirrors by name) a
station takes. Per station, L{routing.StationRelay} turns each frame and each link or timer
event, and a change of route (L{route_change}), into one ordered list of L{effects} (send,
close, open or close a link, observer event, log line, timer) that the relaying edge
carries out.

May import: the standard library and other modules of this package, nothing else
(no Twisted, Autobahn, txaio or zope; tests/unit/test_layers.py checks it).
"""
