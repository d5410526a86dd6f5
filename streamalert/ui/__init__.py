"""The web UI: server-rendered pages over the notification state (alerts, silences, rules, notifications),
behind a login by the API token. See streamalert/ui/web.py for the pages and ui/auth.py for the session."""
