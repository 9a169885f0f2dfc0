"""The event keys an operator can switch on under ``notify.events``, declared with the configuration."""

from ..config.events import (
    BEYOND_NODE_KEYS,
    CERTIFICATE_KEYS,
    CHARGE_POINT_STATUS_KEYS,
    CONNECTION_KEYS,
    CONNECTOR_STATUS_KEYS,
    EVENT_KEYS,
    FAILOVER_KEYS,
    TRANSACTION_KEYS,
)

__all__ = [
    "BEYOND_NODE_KEYS",
    "CERTIFICATE_KEYS",
    "CHARGE_POINT_STATUS_KEYS",
    "CONNECTION_KEYS",
    "CONNECTOR_STATUS_KEYS",
    "EVENT_KEYS",
    "FAILOVER_KEYS",
    "TRANSACTION_KEYS",
]
