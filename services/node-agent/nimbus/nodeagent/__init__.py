"""The node-agent: one per machine; runs sandboxed function instances and registers them in etcd."""
