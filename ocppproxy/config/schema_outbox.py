"""
The keys of the C{outbox} section (the durable outbox of the mirrors), declared as in
L{ocppproxy.config.schema}, which lists them last; C{upstreams.<name>.outbox} is declared
with the other keys of an upstream.
"""

from __future__ import annotations

from .checks import Number, Section, Text
from .model import Config, OutboxConfig
from .setting import MANDATORY, Setting, at

OUTBOX = (
    Setting("outbox", Section(), field=at(Config, "outbox"),
        shown="none (memory queues)",
        doc="The durable outbox of the mirrors (SQLite in WAL mode): what a mirror is owed survives restarts, "
        "``kill -9`` and long outages; off without the section.",
    ),
    Setting("outbox.directory", Text(text="path"), field=at(OutboxConfig, "directory"),
        shown=MANDATORY,
        doc="Existing directory of ``outbox.sqlite3``, relative to the file; writable by the daemon.",
    ),
    Setting("outbox.max_bytes", Number(65536, True, " of bytes"), field=at(OutboxConfig, "max_bytes"),
        doc="Bytes of frames the whole outbox may hold; beyond, the oldest entries are dropped (and counted).",
    ),
    Setting("outbox.max_age", Number(1.0, unit=" of seconds"), field=at(OutboxConfig, "max_age"),
        doc="Seconds an entry may wait for its mirror; older entries are dropped (and counted).",
    ),
)
"""The outbox section's keys, in the order the reference lists them."""
