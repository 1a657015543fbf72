"""Event sources: timers and NATS subjects (they submit async events) and HTTP triggers (sync
calls that the HTTP listener routes /fn/… to)."""
