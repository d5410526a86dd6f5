"""Fault suite: `streamalert run` as a process, one fault per row, measured from outside (bench/README.md)."""
