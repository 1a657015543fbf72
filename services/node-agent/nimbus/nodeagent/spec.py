"""The node-agent's request and result types, their validation, and what an instance is given. Pure."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace

from nimbus.common.errors import InvalidArgument
from nimbus.common.model import FunctionConfig, InstanceRecord
from nimbus.common.model import InstanceState as RecordState
from nimbus.nodeagent.policy import billed_ms

# "module.func", "pkg.module.func" or Lambda's "dir/module.func" (python3.11, nodejs20); a custom
# runtime reads its handler from _HANDLER and may give it any meaning, within reason.
_HANDLER = re.compile(r"^[A-Za-z_][\w/.-]*\.[A-Za-z_$][\w$]*$")
_CUSTOM_HANDLER = re.compile(r"^[\x21-\x7e]{1,128}$")
MAX_TIMEOUT_S = 900
# Time an instance gets to import its handler, on top of the function's timeout.
START_BUDGET_S = 10.0
MIN_MEMORY_MB, MAX_MEMORY_MB = 64, 10240
# Every sandbox starts with these, before it knows its function; the function's own env, given with
# LOAD, may override them.
BASE_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "HOME": "/tmp",
    "TZ": ":UTC",
    "PYTHONUNBUFFERED": "1",
    "LAMBDA_RUNTIME_DIR": "/var/runtime",
}


@dataclass(frozen=True, slots=True)
class InstanceSpec:
    namespace: str
    function: str
    version: str
    config: FunctionConfig
    code_sha256: str
    function_revision: int


@dataclass(frozen=True, slots=True)
class InstanceInfo:
    instance_id: str
    node_id: str
    node_address: str
    spec: InstanceSpec


@dataclass(frozen=True, slots=True)
class InvokeResult:
    payload: bytes
    # "" on success, "Unhandled" when the function failed (Lambda's X-Amz-Function-Error).
    function_error: str
    duration_us: int
    billed_ms: int
    cold_start: bool
    init_duration_us: int
    # The call's last 4 KB of log (output and START/END/REPORT lines), when asked for.
    log_tail: bytes = b""


def validate(spec: InstanceSpec) -> InstanceSpec:
    """The spec with proto3's zero values replaced by the model defaults; raises InvalidArgument."""
    cfg = spec.config
    defaults = FunctionConfig(runtime="", handler="")
    cfg = replace(cfg, memory_mb=cfg.memory_mb or defaults.memory_mb, timeout_s=cfg.timeout_s or defaults.timeout_s)
    if not spec.namespace or not spec.function:
        raise InvalidArgument("spec.namespace and spec.function are required")
    pattern = _CUSTOM_HANDLER if cfg.runtime == "provided" else _HANDLER
    if not pattern.match(cfg.handler):
        raise InvalidArgument(f"handler {cfg.handler!r} must look like module.function")
    if not MIN_MEMORY_MB <= cfg.memory_mb <= MAX_MEMORY_MB:
        raise InvalidArgument(f"memory_mb={cfg.memory_mb} must be in {MIN_MEMORY_MB}..{MAX_MEMORY_MB}")
    if not 1 <= cfg.timeout_s <= MAX_TIMEOUT_S:
        raise InvalidArgument(f"timeout_s={cfg.timeout_s} must be in 1..{MAX_TIMEOUT_S}")
    return replace(spec, config=cfg, version=spec.version or "$LATEST")


def load_header(spec: InstanceSpec, task_root: str) -> dict[str, object]:
    """The LOAD frame's header (protocol.py): where the code is, what to import, the function's env."""
    cfg = spec.config
    env = {
        **cfg.env,
        "NIMBUS_HANDLER": cfg.handler,
        "NIMBUS_NAMESPACE": spec.namespace,
        "NIMBUS_FUNCTION_NAME": spec.function,
        "NIMBUS_FUNCTION_VERSION": spec.version,
        "NIMBUS_MEMORY_MB": str(cfg.memory_mb),
        # The names existing Lambda code reads.
        "AWS_LAMBDA_FUNCTION_NAME": spec.function,
        "AWS_LAMBDA_FUNCTION_VERSION": spec.version,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(cfg.memory_mb),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/nimbus/{spec.namespace}/{spec.function}",
        "AWS_LAMBDA_LOG_STREAM_NAME": spec.version,
        "LAMBDA_TASK_ROOT": task_root,
        "_HANDLER": cfg.handler,
    }
    return {
        "task_root": task_root,
        "handler": cfg.handler,
        "env": env,
        "namespace": spec.namespace,
        "function_name": spec.function,
        "function_version": spec.version,
        "memory_limit_mb": cfg.memory_mb,
    }


def invoke_header(spec: InstanceSpec, request_id: str, now: float) -> dict[str, object]:
    """The INVOKE frame's header (protocol.py); the deadline is wall-clock epoch ms for the shim."""
    return {
        "request_id": request_id,
        "deadline_ms": int((now + spec.config.timeout_s) * 1000),
        "function_name": spec.function,
        "function_version": spec.version,
        "memory_limit_mb": spec.config.memory_mb,
    }


def timeout_result(timeout_s: float, cold: bool, init_us: int) -> InvokeResult:
    body = {"errorType": "Timeout", "errorMessage": f"Task timed out after {timeout_s:.2f} seconds"}
    duration_us = int(timeout_s * 1_000_000)
    return InvokeResult(json.dumps(body).encode(), "Unhandled", duration_us, billed_ms(duration_us), cold, init_us)


def exit_result(
    request_id: str, exit_text: str, duration_us: int, cold: bool, init_us: int, *, oom_mb: int = 0
) -> InvokeResult:
    """The runtime died mid-call; oom_mb set: because it went over that memory limit."""
    message = f"RequestId: {request_id} Error: Runtime exited with error: {exit_text}"
    if oom_mb:
        message += f" (the function used more than its {oom_mb} MB of memory)"
    body = {"errorType": "OutOfMemory" if oom_mb else "Runtime.ExitError", "errorMessage": message}
    return InvokeResult(json.dumps(body).encode(), "Unhandled", duration_us, billed_ms(duration_us), cold, init_us)


def instance_record(
    instance_id: str, node_id: str, node_address: str, spec: InstanceSpec, created_at: str
) -> InstanceRecord:
    return InstanceRecord(
        instance_id=instance_id,
        node_id=node_id,
        node_address=node_address,
        namespace=spec.namespace,
        function=spec.function,
        version=spec.version,
        code_sha256=spec.code_sha256,
        function_revision=spec.function_revision,
        memory_mb=spec.config.memory_mb,
        state=RecordState.READY.value,
        created_at=created_at,
    )


def log_start(spec: InstanceSpec, request_id: str) -> str:
    return f"START RequestId: {request_id} Version: {spec.version}"


def log_end(spec: InstanceSpec, request_id: str, r: InvokeResult, note: str = "") -> list[str]:
    """Lambda's END and REPORT lines, after the platform's own note when it ended the call."""
    report = (
        f"REPORT RequestId: {request_id}\tDuration: {r.duration_us / 1000:.2f} ms\t"
        f"Billed Duration: {r.billed_ms} ms\tMemory Size: {spec.config.memory_mb} MB"
    )
    if r.cold_start:
        report += f"\tInit Duration: {r.init_duration_us / 1000:.2f} ms"
    notes = [f"RequestId: {request_id} Error: {note}"] if note else []
    return [*notes, f"END RequestId: {request_id}", report]
