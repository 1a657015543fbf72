"""Event sources that feed the async path: timers, NATS subjects, and the public HTTP listener."""
