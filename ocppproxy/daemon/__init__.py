"""
The daemon: the twistd entry point (tap), configuration reload, systemd notification and
watchdog, the journal log observer and the traffic log.

May import: everything of ocppproxy; nothing imports it but the twistd plugin (and the
L{ocppproxy.journal} alias).
"""
