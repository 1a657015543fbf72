"""The async path: accept an event (JetStream), run it with retries and dead letters (the
consumer), keep its invocation record (Redis); the gRPC adapter of the async RPCs."""
