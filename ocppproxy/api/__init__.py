"""
The control-plane API (issue 26): an authenticated HTTP API to look at, command and trace
the stations (L{ocppproxy.api.service}), the frame history and live streams behind it,
the audit trail, and the C{ocppproxy-ctl} command-line client (L{ocppproxy.api.ctl}).
"""
