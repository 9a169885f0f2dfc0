"""
The event keys an operator can switch on under ``notify.events``: declared with the
configuration, which checks them, and read from here by the notifier.
"""

CONNECTION_KEYS = (
    "connected_to_proxy",
    "disconnected_from_proxy",
    "connected_to_upstream",
    "disconnected_from_upstream",
)
CHARGE_POINT_STATUS_KEYS = (
    "cp_status_available",
    "cp_status_unavailable",
    "cp_status_faulted",
)
CONNECTOR_STATUS_KEYS = (
    "con_status_available",
    "con_status_preparing",
    "con_status_charging",
    "con_status_suspended_evse",
    "con_status_suspended_ev",
    "con_status_finishing",
    "con_status_reserved",
    "con_status_unavailable",
    "con_status_faulted",
    "con_status_occupied",  # OCPP 2.0.1 only
)
TRANSACTION_KEYS = ("con_start_transaction", "con_stop_transaction")
BEYOND_NODE_KEYS = ("station_boot", "station_silent", "upstream_down", "status_error")
FAILOVER_KEYS = ("failover_started", "failover_ended")
CERTIFICATE_KEYS = ("certificate_expiring", "certificate_expired")
OUTBOX_KEYS = ("outbox_dropped",)

EVENT_KEYS = (
    CONNECTION_KEYS
    + CHARGE_POINT_STATUS_KEYS
    + CONNECTOR_STATUS_KEYS
    + TRANSACTION_KEYS
    + BEYOND_NODE_KEYS
    + FAILOVER_KEYS
    + CERTIFICATE_KEYS
    + OUTBOX_KEYS
)
