"""
The relaying: one L{session.StationSession} per station wiring its station protocol to its
upstream links, the L{proxy.ProxyService} that accepts stations and keeps the registry (and
its L{snapshot} as plain data), the fan-out of its events to isolated L{observers}, the
L{service_tree} that reports a child service's failure to stop, the options connections are
opened with, and the state file of the transaction-id store.

May import: L{ocppproxy.core}, L{ocppproxy.wire}, L{ocppproxy.logs} and the settings types of
L{ocppproxy.config.model}; never daemon, notify or status.
"""
