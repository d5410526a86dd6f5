"""streamalert: real-time alerts from structured JSON logs."""

__version__ = "0.1.0"
