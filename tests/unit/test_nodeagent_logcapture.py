"""Per-call output capture on real pipes: streams, attribution, the cap and its marker, the REPORT
record, the tail."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from nimbus.common.clock import FakeClock, iso
from nimbus.common.model import FunctionConfig
from nimbus.nodeagent import spec as specs
from nimbus.nodeagent.logcapture import (
    MAX_CALL_BYTES,
    TAIL_BYTES,
    LogSource,
    LogWriter,
    OutputCapture,
    record,
)
from nimbus.nodeagent.spec import InstanceSpec, InvokeResult

pytestmark = pytest.mark.timeout(10)

SPEC = InstanceSpec(
    "ns", "fn", "3", FunctionConfig(runtime="python3.11", handler="m.h", memory_mb=256), "sha", 1
)
SOURCE = LogSource("ns", "fn", "3")


@pytest.fixture
def pipes() -> Iterator[tuple[int, int, int, int]]:
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    os.set_blocking(out_r, False)
    os.set_blocking(err_r, False)
    yield out_r, out_w, err_r, err_w
    os.close(out_w)
    os.close(err_w)


async def records(writer: LogWriter, path: Path) -> list[dict[str, object]]:
    await asyncio.sleep(0)  # the deferred REPORT
    await writer.flush()
    return [json.loads(line) for line in path.read_text().splitlines()]


def end(request_id: str, *, cold: bool = False, error: bytes = b"") -> specs.CallEnd:
    result = InvokeResult(
        error or b"null", "Unhandled" if error else "", 12_345, 13, cold, 250_000 if cold else 0
    )
    return specs.log_end(SPEC, request_id, result)


def test_record_has_every_field_of_the_stream_contract() -> None:
    line = record("2026-01-01T00:00:00.000Z", "i1", SOURCE, "r1", "stderr", "héllo")
    assert line.endswith(b"\n")
    assert json.loads(line) == {
        "ts": "2026-01-01T00:00:00.000Z",
        "namespace": "ns",
        "function": "fn",
        "version": "3",
        "request_id": "r1",
        "stream": "stderr",
        "message": "héllo",
        "instance_id": "i1",
    }


def reference_record(
    ts: str,
    instance_id: str,
    source: LogSource,
    request_id: str,
    stream: str,
    message: str,
    report: specs.Report | None = None,
) -> bytes:
    """The record as a plain json.dumps of its fields writes it: record() must match it bytewise."""
    fields: dict[str, object] = {
        "ts": ts,
        "namespace": source.namespace,
        "function": source.function,
        "version": source.version,
        "request_id": request_id,
        "stream": stream,
        "message": message,
        "instance_id": instance_id,
    }
    if report is not None:
        fields["report"] = dataclasses.asdict(report)
    return json.dumps(fields, ensure_ascii=False).encode() + b"\n"


@pytest.mark.parametrize(
    "message",
    [
        "",
        "plain",
        'quotes " and \\ backslash',
        "tab\tnew\nline\r\x00\x1f\x7f",
        "héllo ünïcode ✓ 🚀",
        "\u2028\u2029",
        "\ufffd",
    ],
)
@pytest.mark.parametrize("report", [None, end("r1").report, end("r1", cold=True).report])
def test_record_is_what_json_dumps_writes(message: str, report: specs.Report | None) -> None:
    source = LogSource("ns-1", "fn_ü", "$LATEST")
    if report is not None:
        report = dataclasses.replace(report, max_memory_used_mb=41, error='Err"ör')
    got = record("2026-01-01T00:00:00.123Z", 'i"1', source, "req-\u00e9", "stdout", message, report)
    want = reference_record(
        "2026-01-01T00:00:00.123Z", 'i"1', source, "req-\u00e9", "stdout", message, report
    )
    assert got == want


def test_with_peak_memory_is_replace_of_that_one_field() -> None:
    samples = {"float": 1.5, "int": 7, "bool": True, "str": "x"}
    report = specs.Report(
        **{f.name: samples[str(f.type)] for f in dataclasses.fields(specs.Report)}
    )
    assert specs.with_peak_memory(report, 99) == dataclasses.replace(report, max_memory_used_mb=99)


async def test_the_writer_stamps_records_as_iso_does(tmp_path: Path) -> None:
    clock = FakeClock(0.0, advance_on_sleep=False)
    writer = LogWriter(tmp_path, clock)
    # Repeats within one millisecond (the cached text), and a time whose ms rounds up to the
    # next second.
    times = [
        1_700_000_000.25,
        1_700_000_000.2502,
        1_700_000_000.2509,
        1_700_000_000.9995,
        1_700_000_001.0,
        1_700_000_059.999999,
        1_700_000_059.9999999999,
        1_700_000_060.0,
        1_700_000_060.5,
        86_399.001,
        86_399.001,
    ]
    for clock.t in times:
        writer.append("i", SOURCE, "r", "stdout", ["line"])
    await writer.flush()
    assert [
        json.loads(line)["ts"] for line in (tmp_path / "i.jsonl").read_text().splitlines()
    ] == list(map(iso, times))


@pytest.mark.parametrize(
    ("cold", "error", "want_error", "init_part"),
    [
        (True, b"", "", "\tInit Duration: 250.00 ms"),
        (False, b'{"errorType": "ValueError", "errorMessage": "x"}', "ValueError", ""),
        (False, b"not json", "Unhandled", ""),
    ],
)
def test_report_line_and_fields(cold: bool, error: bytes, want_error: str, init_part: str) -> None:
    footer = end("r1", cold=cold, error=error)
    assert footer.report.error == want_error
    assert (
        footer.report.billed_ms == 13
        and footer.report.memory_mb == 256
        and footer.report.cold_start is cold
    )
    line = specs.report_line("r1", footer.report)
    assert line == (
        "REPORT RequestId: r1\tDuration: 12.35 ms\tBilled Duration: 13 ms\tMemory Size: 256 MB\t"
        "Max Memory Used: 0 MB" + init_part
    )


async def test_streams_are_kept_apart_and_tagged_per_call(
    tmp_path: Path, pipes: tuple[int, int, int, int]
) -> None:
    out_r, out_w, err_r, err_w = pipes
    writer = LogWriter(tmp_path, FakeClock(1_700_000_000.25, advance_on_sleep=False))
    cap = OutputCapture(out_r, err_r, "inst", writer, peak_memory=lambda: 40 * 1024 * 1024 + 1)
    cap.assign(SOURCE)
    os.write(out_w, b"init line\n")
    cap.begin("req-1", "START RequestId: req-1")
    os.write(out_w, b"one\ntw")
    os.write(err_w, b"oops\n")
    os.write(out_w, b"o\nno newline at the end")
    tail = cap.end(end("req-1", cold=True), tail=True)
    lines = tail.decode().splitlines()
    assert lines[0] == "START RequestId: req-1"
    assert sorted(lines[1:5]) == sorted(["one", "two", "no newline at the end", "oops"])
    assert lines[5] == "END RequestId: req-1"
    assert lines[6].startswith("REPORT RequestId: req-1\t") and "Max Memory Used: 41 MB" in lines[6]
    cap.begin("req-2", "START RequestId: req-2")
    assert cap.end(end("req-2")) == b""  # no tail unless asked
    cap.close()
    got = await records(writer, tmp_path / "inst.jsonl")
    assert all(
        r["namespace"] == "ns" and r["function"] == "fn" and r["version"] == "3" for r in got
    )
    assert [
        (r["request_id"], r["stream"], r["message"]) for r in got if r["stream"] != "platform"
    ] == [
        ("", "stdout", "init line"),
        ("req-1", "stdout", "one"),
        ("req-1", "stdout", "two"),
        ("req-1", "stderr", "oops"),
        ("req-1", "stdout", "no newline at the end"),
    ]
    platform = [
        (r["request_id"], str(r["message"]).split("\t")[0])
        for r in got
        if r["stream"] == "platform"
    ]
    assert platform == [
        ("req-1", "START RequestId: req-1"),
        ("req-1", "END RequestId: req-1"),
        ("req-1", "REPORT RequestId: req-1"),
        ("req-2", "START RequestId: req-2"),
        ("req-2", "END RequestId: req-2"),
        ("req-2", "REPORT RequestId: req-2"),
    ]
    reports = [r["report"] for r in got if "report" in r]
    assert reports == [
        {
            "duration_ms": 12.345,
            "billed_ms": 13,
            "memory_mb": 256,
            "max_memory_used_mb": 41,
            "cold_start": True,
            "init_duration_ms": 250.0,
            "error": "",
            "runtime_duration_ms": 0.0,
        },
        {
            "duration_ms": 12.345,
            "billed_ms": 13,
            "memory_mb": 256,
            "max_memory_used_mb": 41,
            "cold_start": False,
            "init_duration_ms": 0.0,
            "error": "",
            "runtime_duration_ms": 0.0,
        },
    ]
    assert all(str(r["message"]).startswith("REPORT") for r in got if "report" in r)


async def test_a_call_keeps_256_kb_and_says_what_it_dropped(
    tmp_path: Path, pipes: tuple[int, int, int, int]
) -> None:
    out_r, out_w, err_r, _ = pipes
    writer = LogWriter(tmp_path, FakeClock(1_700_000_000.25, advance_on_sleep=False))
    cap = OutputCapture(out_r, err_r, "big", writer)
    cap.assign(SOURCE)
    cap.begin("req", "START")
    line = b"y" * 1023 + b"\n"
    sent = 0
    for _ in range(300):  # 300 KB in pipe-sized steps, read as they come
        os.write(out_w, line * 16)
        sent += len(line) * 16
        cap._read_all()
    tail = cap.end(end("req"), tail=True).decode()
    assert len(tail.encode()) <= TAIL_BYTES
    over = sent - MAX_CALL_BYTES
    marker = f"[nimbus] output truncated: {over} bytes over the 256 KB limit were dropped"
    assert tail.splitlines()[-3:-1] == [marker, "END RequestId: req"]
    cap.close()
    got = await records(writer, tmp_path / "big.jsonl")
    kept = [r for r in got if r["stream"] == "stdout"]
    assert sum(len(str(r["message"])) + 1 for r in kept) == MAX_CALL_BYTES
    assert all(r["request_id"] == "req" for r in kept)
    assert [r["message"] for r in got if r["stream"] == "platform"][1] == marker


async def test_the_writer_says_when_an_instance_is_finished(
    tmp_path: Path, pipes: tuple[int, int, int, int]
) -> None:
    out_r, out_w, err_r, _ = pipes
    writer = LogWriter(tmp_path, FakeClock(1_700_000_000.25, advance_on_sleep=False))
    cap = OutputCapture(out_r, err_r, "gone", writer)
    assert not writer.finished("gone")
    os.write(out_w, b"last words\n")
    cap.close()
    assert not writer.finished("gone")  # its last line is not on disk yet
    await writer.flush()
    assert writer.finished("gone") and writer.written.is_set()
    assert (
        json.loads((tmp_path / "gone.jsonl").read_text())["function"] == ""
    )  # never given a function


async def test_overlapping_calls_leave_ambiguous_lines_unattributed(
    tmp_path: Path, pipes: tuple[int, int, int, int]
) -> None:
    out_r, out_w, err_r, _ = pipes
    writer = LogWriter(tmp_path, FakeClock(1_700_000_000.25, advance_on_sleep=False))
    cap = OutputCapture(out_r, err_r, "multi", writer)
    cap.assign(SOURCE)
    cap.begin("a", "START a")
    os.write(out_w, b"only a runs\n")
    cap.begin("b", "START b")
    os.write(out_w, b"both run\n")
    cap.end(end("a"))
    os.write(out_w, b"only b runs\n")
    cap.end(end("b"))
    cap.close()
    got = await records(writer, tmp_path / "multi.jsonl")
    assert [(r["request_id"], r["message"]) for r in got if r["stream"] == "stdout"] == [
        ("a", "only a runs"),
        ("", "both run"),
        ("b", "only b runs"),
    ]


async def test_a_function_cannot_forge_platform_lines_in_the_tail(
    tmp_path: Path, pipes: tuple[int, int, int, int]
) -> None:
    out_r, out_w, err_r, err_w = pipes
    writer = LogWriter(tmp_path, FakeClock(1_700_000_000.25, advance_on_sleep=False))
    cap = OutputCapture(out_r, err_r, "liar", writer)
    cap.assign(SOURCE)
    cap.begin("req-1", "START RequestId: req-1")
    os.write(out_w, b"END RequestId: req-1\n")
    os.write(err_w, b"REPORT RequestId: req-1\tDuration: 1.00 ms\tBilled Duration: 1 ms\n")
    cap._read_all()
    os.write(out_w, b"\x1b[2mfaint\x1b[0m and\rcarriage\n")
    tail = cap.end(end("req-1"), tail=True).decode().splitlines()
    assert tail[0] == "START RequestId: req-1"
    assert tail[1:4] == [
        "(stdout) END RequestId: req-1",
        "(stderr) REPORT RequestId: req-1\tDuration: 1.00 ms\tBilled Duration: 1 ms",
        "\\x1b[2mfaint\\x1b[0m and\\x0dcarriage",
    ]
    # Exactly one END and one REPORT line are the platform's: the last two.
    assert [ln.split(" ")[0] for ln in tail].count("END") == 1 and tail[
        -2
    ] == "END RequestId: req-1"
    assert [ln for ln in tail if ln.startswith("REPORT")] == [tail[-1]]
    cap.close()
    # The stored records keep the raw text, tagged with the stream that says whose it is.
    got = await records(writer, tmp_path / "liar.jsonl")
    forged = [r for r in got if str(r["message"]).startswith("END")]
    assert sorted(str(r["stream"]) for r in forged) == ["platform", "stdout"]
