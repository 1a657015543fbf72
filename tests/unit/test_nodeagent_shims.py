"""The in-sandbox shims' pure parts: the provided runtime's seccomp program, run on a tiny
classic-BPF interpreter, and the Node shim's codec against the agent's (when node is installed)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from types import ModuleType

import pytest
from nimbus.nodeagent.protocol import Frame, FrameDecoder, Kind, encode
from nimbus.nodeagent.runtimes import NODE_BOOTSTRAP, RUNTIMES_DIR

pytestmark = pytest.mark.timeout(20)

EPERM = 0x00050000 | 1
ALLOW = 0x7FFF0000
X86_64, I386 = 0xC000003E, 0x40000003


@pytest.fixture(scope="module")
def nolisten() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "nimbus_nolisten", RUNTIMES_DIR / "provided" / "nolisten.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_bpf(prog: list[tuple[int, int, int, int]], nr: int, arch: int) -> int:
    """Executes the three instruction kinds the program uses on seccomp_data (nr, arch)."""
    acc, pc = 0, 0
    while True:
        code, jt, jf, k = prog[pc]
        if code == 0x20:  # BPF_LD | BPF_W | BPF_ABS
            acc = {0: nr, 4: arch}[k]
            pc += 1
        elif code in (0x15, 0x35):  # BPF_JMP | BPF_JEQ / BPF_JGE, BPF_K
            hit = acc == k if code == 0x15 else acc >= k
            pc += 1 + (jt if hit else jf)
        elif code == 0x06:  # BPF_RET | BPF_K
            return k
        else:
            raise AssertionError(f"unexpected instruction {code:#x}")


@pytest.mark.parametrize(
    ("nr", "arch", "verdict"),
    [
        (50, X86_64, EPERM),  # listen
        (49, X86_64, ALLOW),  # bind
        (43, X86_64, ALLOW),  # accept: the shim's own listening socket keeps serving
        (0, X86_64, ALLOW),
        (0x40000000 | 50, X86_64, EPERM),  # x32's listen
        (102, I386, EPERM),  # socketcall on the i386 ABI: refused whatever it multiplexes
    ],
)
def test_forbid_listen_program(nolisten: ModuleType, nr: int, arch: int, verdict: int) -> None:
    assert run_bpf(nolisten.program("x86_64"), nr, arch) == verdict


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
@pytest.mark.parametrize(
    ("kind", "header", "body"),
    [
        (Kind.RESULT, {"request_id": "r1", "duration_us": 12}, b'{"a": [1, "\xc3\xa9"]}'),
        (Kind.READY, {}, b""),
    ],
)
def test_node_codec_agrees_with_agent(kind: Kind, header: dict[str, object], body: bytes) -> None:
    script = (
        f"const s = require({json.dumps(str(NODE_BOOTSTRAP))});"
        "let input = Buffer.alloc(0);"
        "process.stdin.on('data', (c) => { input = Buffer.concat([input, c]); });"
        "process.stdin.on('end', () => {"
        "  const [[type, header, body]] = new s.Decoder().feed(input);"
        "  delete header.type;"
        "  process.stdout.write(s.encode(type, header, body));"
        "});"
    )
    out = subprocess.run(
        ["node", "-e", script],
        input=encode(kind, header, body),
        capture_output=True,
        timeout=15,
        check=True,
    ).stdout
    assert FrameDecoder().feed(out) == [Frame(kind, header, body)]
