"""`python -m nimbus.common.healthprobe HOST:PORT`: exit 0 when the service there is SERVING (the
gRPC health protocol), 1 otherwise. For container health checks (deploy/compose)."""

from __future__ import annotations

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def serving(address: str, timeout_s: float = 2.0) -> bool:
    try:
        with grpc.insecure_channel(address) as channel:
            # types-grpcio-health-checking declares HealthStub without its methods.
            check = health_pb2_grpc.HealthStub(channel).Check  # type: ignore[attr-defined]
            reply: health_pb2.HealthCheckResponse = check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout_s
            )
    except grpc.RpcError:
        return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


if __name__ == "__main__":
    sys.exit(0 if len(sys.argv) == 2 and serving(sys.argv[1]) else 1)
