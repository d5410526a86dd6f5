"""Notifications: transitions -> dispatch (routing, grouping, silences, inhibition) -> outbox -> sender -> sinks.

- `model`: the alert and notification value types (the notification is Alertmanager's webhook payload, v4).
- `routing`: the routing tree and label matchers, with Alertmanager's semantics.
- `dispatch`: grouping and dedup as pure functions of the dispatch state and `now`.
- `silences`, `inhibit`: what mutes an alert at flush time.
- `store`: where dispatch state, the outbox, dead letters and history live (memory and Redis).
- `sender`: drains the outbox through the sinks; the one place that retries a delivery.
- `sinks`: one module per destination behind one interface, registered in one table.
"""
