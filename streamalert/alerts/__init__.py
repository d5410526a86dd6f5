"""Alerts: the pending -> firing -> resolved lifecycle as pure functions of state and `now`."""
