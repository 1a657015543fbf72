"""The node-agent's request and result types,
their validation, and what an instance is given. Pure."""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass, replace

from nimbus.common.errors import InvalidArgument
from nimbus.common.model import FunctionConfig, InstanceRecord
from nimbus.common.model import InstanceState as RecordState
from nimbus.nodeagent.policy import billed_ms
from nimbus.nodeagent.protocol import InvokeEncoder

# "module.func", "pkg.module.func" or Lambda's "dir/module.func" (python3.11, nodejs20); a custom
# runtime reads its handler from _HANDLER and may give it any meaning, within reason.
_HANDLER = re.compile(r"^[A-Za-z_][\w/.-]*\.[A-Za-z_$][\w$]*$")
_CUSTOM_HANDLER = re.compile(r"^[\x21-\x7e]{1,128}$")
MAX_TIMEOUT_S = 900
MAX_INSTANCE_CONCURRENCY = 100
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
# The cluster's region when NIMBUS_REGION does not name one (config.py): what AWS_REGION says and
# what function ARNs hold, so code written for Lambda finds the region where it looks for it.
DEFAULT_REGION = "us-east-1"
# AWS_EXECUTION_ENV per runtime, as Lambda sets it (a custom runtime gets none, as on Lambda).
_EXECUTION_ENV = {"python3.11": "AWS_Lambda_python3.11", "nodejs20": "AWS_Lambda_nodejs20.x"}


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
    # What the runtime inside the sandbox says the handler took: a hint for the REPORT only. The
    # sandbox runs the user's code, which can patch its clock, so duration_us (what is billed) is
    # measured by the agent, from the INVOKE frame's write to the reply's arrival.
    runtime_duration_us: int = 0


def validate(spec: InstanceSpec) -> InstanceSpec:
    """The spec with proto3's zero values replaced by the model defaults; raises InvalidArgument."""
    cfg = spec.config
    defaults = FunctionConfig(runtime="", handler="")
    cfg = replace(
        cfg,
        memory_mb=cfg.memory_mb or defaults.memory_mb,
        timeout_s=cfg.timeout_s or defaults.timeout_s,
    )
    if not spec.namespace or not spec.function:
        raise InvalidArgument("spec.namespace and spec.function are required")
    pattern = _CUSTOM_HANDLER if cfg.runtime == "provided" else _HANDLER
    if not pattern.match(cfg.handler):
        raise InvalidArgument(f"handler {cfg.handler!r} must look like module.function")
    if not MIN_MEMORY_MB <= cfg.memory_mb <= MAX_MEMORY_MB:
        raise InvalidArgument(
            f"memory_mb={cfg.memory_mb} must be in {MIN_MEMORY_MB}..{MAX_MEMORY_MB}"
        )
    if not 1 <= cfg.timeout_s <= MAX_TIMEOUT_S:
        raise InvalidArgument(f"timeout_s={cfg.timeout_s} must be in 1..{MAX_TIMEOUT_S}")
    if not 1 <= cfg.instance_concurrency <= MAX_INSTANCE_CONCURRENCY:
        raise InvalidArgument(
            f"instance_concurrency={cfg.instance_concurrency} "
            f"must be in 1..{MAX_INSTANCE_CONCURRENCY}"
        )
    return replace(spec, config=cfg, version=spec.version or "$LATEST")


def account_id(namespace: str) -> str:
    """The namespace as an AWS account id, in function ARNs: twelve digits, the first eight bytes of
    sha256(namespace) as an integer modulo 10**12, zero-padded. Stable across nodes and restarts,
    and distinct per namespace (as a Lambda account is per tenant)."""
    digest = hashlib.sha256(namespace.encode()).digest()
    return f"{int.from_bytes(digest[:8], 'big') % 10**12:012d}"


def function_arn(region: str, namespace: str, function: str, qualifier: str = "") -> str:
    """Lambda's arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER], so code that splits it
    (ARN parsers, Powertools) finds each part where Lambda puts it."""
    arn = f"arn:aws:lambda:{region}:{account_id(namespace)}:function:{function}"
    return f"{arn}:{qualifier}" if qualifier else arn


def invoked_qualifier(spec: InstanceSpec) -> str:
    """The qualifier an instance's calls are taken to come through: its published version, or none
    for $LATEST (an unqualified call's ARN, the common case). The invoke request does not say which
    alias (if any) a call named, so a call through an alias shows the version the alias chose."""
    return "" if spec.version == "$LATEST" else spec.version


def log_group_name(spec: InstanceSpec) -> str:
    """Lambda's /aws/lambda/NAME: the account (the namespace) already tells tenants apart."""
    return f"/aws/lambda/{spec.function}"


def log_stream_name(spec: InstanceSpec, instance_id: str, now: float) -> str:
    """Lambda's YYYY/MM/DD/[VERSION]ID, one per instance, ID its instance id."""
    return f"{time.strftime('%Y/%m/%d', time.gmtime(now))}/[{spec.version}]{instance_id}"


def load_header(
    spec: InstanceSpec,
    task_root: str,
    *,
    region: str = DEFAULT_REGION,
    log_stream: str = "",
) -> dict[str, object]:
    """The LOAD frame's header (protocol.py): where the code is, what to import, the function's
    env with the variables Lambda sets (the function's own may override AWS_REGION,
    AWS_DEFAULT_REGION and TZ; validation keeps AWS_LAMBDA_* and NIMBUS_* the platform's)."""
    cfg = spec.config
    arn = function_arn(region, spec.namespace, spec.function, invoked_qualifier(spec))
    group = log_group_name(spec)
    stream = log_stream or f"[{spec.version}]"
    platform = {"AWS_REGION": region, "AWS_DEFAULT_REGION": region, "TZ": BASE_ENV["TZ"]}
    execution_env = _EXECUTION_ENV.get(cfg.runtime)
    if execution_env:
        platform["AWS_EXECUTION_ENV"] = execution_env
    env = {
        **platform,
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
        "AWS_LAMBDA_LOG_GROUP_NAME": group,
        "AWS_LAMBDA_LOG_STREAM_NAME": stream,
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "LAMBDA_TASK_ROOT": task_root,
        "LAMBDA_RUNTIME_DIR": BASE_ENV["LAMBDA_RUNTIME_DIR"],
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
        "function_arn": arn,
        "log_group_name": group,
        "log_stream_name": stream,
        # How many INVOKEs the shim may be given at once (it sizes its worker threads by it).
        "instance_concurrency": cfg.instance_concurrency,
    }


def invoke_encoder(spec: InstanceSpec) -> InvokeEncoder:
    """The INVOKE frames (protocol.py) of an instance of this spec."""
    return InvokeEncoder(spec.function, spec.version, spec.config.memory_mb)


def deadline_ms(spec: InstanceSpec, now: float) -> int:
    """A call's deadline as the INVOKE frame gives it to the shim: wall-clock epoch ms."""
    return int((now + spec.config.timeout_s) * 1000)


def timeout_message(timeout_s: float) -> str:
    return f"Task timed out after {timeout_s:.2f} seconds"


def timeout_result(timeout_s: float, cold: bool, init_us: int) -> InvokeResult:
    """Lambda's error shape; stackTrace is empty: the function was stopped, it raised nothing."""
    message = (
        f"{timeout_message(timeout_s)} (timeout_s {timeout_s:g}; raise it with"
        " nimbus deploy --timeout S if the work needs longer)"
    )
    body: dict[str, object] = {"errorType": "Timeout", "errorMessage": message, "stackTrace": []}
    duration_us = int(timeout_s * 1_000_000)
    return InvokeResult(
        json.dumps(body).encode(), "Unhandled", duration_us, billed_ms(duration_us), cold, init_us
    )


def exit_result(
    request_id: str, exit_text: str, duration_us: int, cold: bool, init_us: int, *, oom_mb: int = 0
) -> InvokeResult:
    """The runtime died mid-call; oom_mb set: because it went over that memory limit."""
    message = f"RequestId: {request_id} Error: Runtime exited with error: {exit_text}"
    if oom_mb:
        message += (
            f" (the function used more than its {oom_mb} MB of memory; raise memory_mb with"
            " nimbus deploy --memory MB if it needs more)"
        )
    body: dict[str, object] = {
        "errorType": "OutOfMemory" if oom_mb else "Runtime.ExitError",
        "errorMessage": message,
        "stackTrace": [],
    }
    return InvokeResult(
        json.dumps(body).encode(), "Unhandled", duration_us, billed_ms(duration_us), cold, init_us
    )


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
        instance_concurrency=spec.config.instance_concurrency,
        state=RecordState.READY.value,
        created_at=created_at,
    )


def log_start(spec: InstanceSpec, request_id: str) -> str:
    return f"START RequestId: {request_id} Version: {spec.version}"


@dataclass(frozen=True, slots=True)
class Report:
    """A call's REPORT, as text (report_line) and as the structured field of its log record
    (nimbus.common.logstream), so no consumer parses text. The field names are that contract."""

    duration_ms: float
    billed_ms: int
    memory_mb: int
    # Filled in at the end of the call from the sandbox's peak memory (logcapture.py).
    max_memory_used_mb: int
    cold_start: bool
    init_duration_ms: float
    # "" on success, else the error type (e.g. "Timeout", "OutOfMemory", the exception's class).
    error: str
    # The runtime's own figure for the handler's time (a hint; duration_ms is the agent's).
    runtime_duration_ms: float = 0.0


def with_peak_memory(r: Report, max_memory_used_mb: int) -> Report:
    """dataclasses.replace(r, max_memory_used_mb=...),
    at a third of its cost: every call's REPORT."""
    return Report(
        duration_ms=r.duration_ms,
        billed_ms=r.billed_ms,
        memory_mb=r.memory_mb,
        max_memory_used_mb=max_memory_used_mb,
        cold_start=r.cold_start,
        init_duration_ms=r.init_duration_ms,
        error=r.error,
        runtime_duration_ms=r.runtime_duration_ms,
    )


@dataclass(frozen=True, slots=True)
class CallEnd:
    """What a call's log ends with: the platform's notes (why it ended the call), END, REPORT."""

    request_id: str
    notes: tuple[str, ...]
    report: Report


def log_end(spec: InstanceSpec, request_id: str, r: InvokeResult, note: str = "") -> CallEnd:
    """Lambda's END and REPORT lines, after the platform's own note when it ended the call: its
    ERROR line "RequestId: ID Error: TYPE: MESSAGE" (calls.py; Lambda's wording, with the error
    type; no stack trace, since the runtime was stopped or is gone)."""
    report = Report(
        duration_ms=round(r.duration_us / 1000, 3),
        billed_ms=r.billed_ms,
        memory_mb=spec.config.memory_mb,
        max_memory_used_mb=0,
        cold_start=r.cold_start,
        init_duration_ms=round(r.init_duration_us / 1000, 3) if r.cold_start else 0.0,
        error=error_type(r),
        runtime_duration_ms=round(r.runtime_duration_us / 1000, 3),
    )
    notes = (f"RequestId: {request_id} Error: {note}",) if note else ()
    return CallEnd(request_id, notes, report)


def error_type(r: InvokeResult) -> str:
    """The failed call's errorType (its payload is {"errorType", ...}); "" when it succeeded."""
    if not r.function_error:
        return ""
    try:
        body = json.loads(r.payload)
    except ValueError:
        return r.function_error
    kind = body.get("errorType") if isinstance(body, dict) else None
    return kind if isinstance(kind, str) and kind else r.function_error


def init_error_line(error_type: str, message: str) -> str:
    """The platform's ERROR line when init failed and the runtime could not say why itself."""
    return f"[nimbus] ERROR Init failed: {error_type}: {message}"


def log_end_line(request_id: str) -> str:
    return f"END RequestId: {request_id}"


def report_line(request_id: str, r: Report) -> str:
    line = (
        f"REPORT RequestId: {request_id}\tDuration: {r.duration_ms:.2f} ms\t"
        f"Billed Duration: {r.billed_ms} ms\tMemory Size: {r.memory_mb} MB\t"
        f"Max Memory Used: {r.max_memory_used_mb} MB"
    )
    if r.cold_start:
        line += f"\tInit Duration: {r.init_duration_ms:.2f} ms"
    return line
