"""ocppproxy: relays OCPP-J charging stations to a primary and a secondary central system."""

__version__ = "0.1.0"
