"""Adds the API v2 servicers to the api service's server (called from main)."""

from __future__ import annotations

import grpc
from nimbus.api.adminserver import AdminServicer
from nimbus.api.code import CodeApi
from nimbus.api.functions import FunctionsApi
from nimbus.api.listing import Listing
from nimbus.api.rollouts import AdminApi
from nimbus.api.stores.registry import EtcdRegistryStore
from nimbus.api.v2 import admin_pb2_grpc
from nimbus.api.v2 import functions_pb2_grpc as functions_v2_pb2_grpc
from nimbus.api.v2server import FunctionsV2Servicer
from nimbus.api.versions import VersionsApi
from nimbus.common.clock import SystemClock
from nimbus.common.etcd import Etcd


def add_v2(
    server: grpc.aio.Server,
    functions: FunctionsApi,
    versions: VersionsApi,
    etcd: Etcd,
    code: CodeApi,
) -> None:
    functions_v2_pb2_grpc.add_FunctionsServicer_to_server(
        FunctionsV2Servicer(functions, Listing(functions, versions), code), server
    )
    admin_pb2_grpc.add_AdminServicer_to_server(
        AdminServicer(AdminApi(EtcdRegistryStore(etcd), SystemClock())), server
    )
