"""Alerts: OCPP and connection events turned into e-mail, Pushover and log messages."""
