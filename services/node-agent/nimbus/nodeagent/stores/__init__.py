"""Adapters to other services and stores;
the only node-agent modules besides server.py that know gRPC."""
