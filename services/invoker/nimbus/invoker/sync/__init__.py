"""The sync path: the Invoker core every call goes through, its dispatcher and limits, and the
gRPC adapters of Invoke (v1, v2 with BatchInvoke) and InvokerControl."""
