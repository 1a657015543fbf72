"""proto ↔ record conversion for the internal API types,
shared by the servers and client adapters."""

from __future__ import annotations

from nimbus.common.model import AliasRecord, FunctionConfig, FunctionRecord, VersionRecord
from nimbus.internal.v1 import types_pb2


def config_to_pb(config: FunctionConfig) -> types_pb2.FunctionConfig:
    return types_pb2.FunctionConfig(
        runtime=config.runtime,
        handler=config.handler,
        memory_mb=config.memory_mb,
        timeout_s=config.timeout_s,
        env=config.env,
        description=config.description,
        max_concurrency=config.max_concurrency,
        min_instances=config.min_instances,
        keep_alive_s=config.keep_alive_s,
        tags=config.tags,
        instance_concurrency=config.instance_concurrency,
    )


def config_from_pb(pb: types_pb2.FunctionConfig) -> FunctionConfig:
    return FunctionConfig(
        runtime=pb.runtime,
        handler=pb.handler,
        memory_mb=pb.memory_mb,
        timeout_s=pb.timeout_s,
        env=dict(pb.env),
        description=pb.description,
        max_concurrency=pb.max_concurrency,
        min_instances=pb.min_instances,
        keep_alive_s=pb.keep_alive_s,
        tags=dict(pb.tags),
        # proto3's zero is an older writer that did not know the field: one call per instance.
        instance_concurrency=pb.instance_concurrency or 1,
    )


def record_to_pb(record: FunctionRecord) -> types_pb2.FunctionRecord:
    return types_pb2.FunctionRecord(
        namespace=record.namespace,
        name=record.name,
        config=config_to_pb(record.config),
        code_sha256=record.code_sha256,
        code_size=record.code_size,
        revision=record.revision,
        created_at=record.created_at,
        updated_at=record.updated_at,
        warnings=record.warnings,
    )


def record_from_pb(pb: types_pb2.FunctionRecord) -> FunctionRecord:
    return FunctionRecord(
        namespace=pb.namespace,
        name=pb.name,
        config=config_from_pb(pb.config),
        code_sha256=pb.code_sha256,
        code_size=pb.code_size,
        created_at=pb.created_at,
        updated_at=pb.updated_at,
        revision=pb.revision,
        warnings=tuple(pb.warnings),
    )


def version_to_pb(record: VersionRecord) -> types_pb2.VersionRecord:
    return types_pb2.VersionRecord(
        namespace=record.namespace,
        name=record.name,
        version=record.version,
        description=record.description,
        config=config_to_pb(record.config),
        code_sha256=record.code_sha256,
        code_size=record.code_size,
        created_at=record.created_at,
        revision=record.revision,
    )


def version_from_pb(pb: types_pb2.VersionRecord) -> VersionRecord:
    return VersionRecord(
        namespace=pb.namespace,
        name=pb.name,
        version=pb.version,
        description=pb.description,
        config=config_from_pb(pb.config),
        code_sha256=pb.code_sha256,
        code_size=pb.code_size,
        created_at=pb.created_at,
        revision=pb.revision,
    )


def alias_to_pb(record: AliasRecord) -> types_pb2.AliasRecord:
    return types_pb2.AliasRecord(
        namespace=record.namespace,
        name=record.name,
        alias=record.alias,
        version=record.version,
        routing=types_pb2.AliasRouting(
            version=record.routing_version, weight=record.routing_weight
        ),
        description=record.description,
        revision=record.revision,
    )


def alias_from_pb(pb: types_pb2.AliasRecord) -> AliasRecord:
    return AliasRecord(
        namespace=pb.namespace,
        name=pb.name,
        alias=pb.alias,
        version=pb.version,
        routing_version=pb.routing.version,
        routing_weight=pb.routing.weight,
        description=pb.description,
        revision=pb.revision,
    )
