"""One call on one instance: the INVOKE frame out, the reply (or the failure) back. No state kept.

A function's failures stay function errors (a result with "Unhandled"), as in Lambda: a call past
timeout_s is "Timeout", a runtime that died mid-call is "Runtime.ExitError", or "OutOfMemory" when
its cgroup says the kernel killed it for memory. Each of those is fatal to the instance: the
manager destroys it before answering, so the next call gets a fresh one. With instance_concurrency
> 1 the other calls in flight on it end then too (as on Cloud Run and SCF), as
"Runtime.ExitError" naming the call that ended the instance.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

from nimbus.common.clock import Clock
from nimbus.nodeagent import spec as specs
from nimbus.nodeagent.boot import Sandbox
from nimbus.nodeagent.policy import billed_ms
from nimbus.nodeagent.protocol import InvokeEncoder, Kind, ProtocolError
from nimbus.nodeagent.sandbox import SandboxDriver
from nimbus.nodeagent.shim import CallAborted, describe_exit
from nimbus.nodeagent.spec import InstanceSpec, InvokeResult

# After the connection broke, how long to wait for the exit status that explains why.
_EXIT_STATUS_WAIT_S = 1.0


@dataclass(frozen=True, slots=True)
class Outcome:
    result: InvokeResult
    # The instance cannot take another call: destroy it.
    fatal: bool = False
    # The platform's own line for the call's log (why it ended the call), if any.
    note: str = ""


async def call_instance(
    sb: Sandbox,
    driver: SandboxDriver,
    spec: InstanceSpec,
    request_id: str,
    payload: bytes,
    clock: Clock,
    *,
    frames: InvokeEncoder,
    cold: bool,
    init_us: int,
) -> Outcome:
    cfg = spec.config
    init_us = init_us if cold else 0
    frame = frames.encode(request_id, specs.deadline_ms(spec, clock.now()), payload)
    started = clock.monotonic()
    try:
        reply = await sb.conn.call(request_id, frame, cfg.timeout_s)
    except TimeoutError:
        result = specs.timeout_result(cfg.timeout_s, cold, init_us)
        note = f"Timeout: {specs.timeout_message(cfg.timeout_s)}"
        return Outcome(result, fatal=True, note=note)
    except CallAborted as err:
        elapsed_us = int((clock.monotonic() - started) * 1_000_000)
        result = specs.exit_result(request_id, str(err), elapsed_us, cold, init_us)
        return Outcome(result, fatal=True, note=f"Runtime.ExitError: {err}")
    except (OSError, ProtocolError):
        elapsed_us = int((clock.monotonic() - started) * 1_000_000)
        try:
            async with asyncio.timeout(_EXIT_STATUS_WAIT_S):
                exit_text = describe_exit(await driver.wait(sb.handle))
        except TimeoutError:
            exit_text = "protocol error"
        oom_mb = cfg.memory_mb if driver.oom_killed(sb.handle) else 0
        result = specs.exit_result(request_id, exit_text, elapsed_us, cold, init_us, oom_mb=oom_mb)
        kind = "OutOfMemory" if oom_mb else "Runtime.ExitError"
        return Outcome(result, fatal=True, note=f"{kind}: Runtime exited with error: {exit_text}")
    # Billed on the agent's clock: the sandbox's duration_us is whatever the function makes it.
    duration_us = int((clock.monotonic() - started) * 1_000_000)
    error = "" if reply.kind is Kind.RESULT else "Unhandled"
    fatal = bool(reply.header.get("fatal"))
    result = InvokeResult(
        reply.body,
        error,
        duration_us,
        billed_ms(duration_us),
        cold,
        init_us,
        runtime_duration_us=int(reply.header.get("duration_us", 0)),
    )
    if fatal:
        # The runtime is gone (a custom runtime's process died, an error nobody awaited in
        # Node.js): the platform's ERROR line says so, as Lambda's "Runtime exited" line does.
        return Outcome(result, fatal=True, note=fatal_note(reply.body))
    return Outcome(result)


def fatal_note(body: bytes) -> str:
    """'TYPE: MESSAGE' of a fatal ERROR reply's body, without the message's own "RequestId: ID
    Error: " (the note line starts with that already)."""
    try:
        err = json.loads(body)
    except ValueError:
        err = None
    if not isinstance(err, dict):
        return "Runtime.ExitError: the runtime failed"
    kind = str(err.get("errorType") or "Runtime.ExitError")
    message = str(err.get("errorMessage") or "")
    if message.startswith("RequestId: ") and " Error: " in message:
        message = message.split(" Error: ", 1)[1]
    return f"{kind}: {message}"
