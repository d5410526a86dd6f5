"""Telemetry of streamalert itself: Prometheus metrics and structured JSON logs."""
