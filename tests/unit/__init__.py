"""The unit tier: no process, no socket beyond memory transports, no wall clock (make unit)."""
