"""The load path's pure parts: bench.httpclient's response parser, bench.loadgen's job parsing."""

import pytest

from bench.httpclient import HttpError, build_request, parse_response
from bench.loadgen import Job, Outcome
from bench.memory import parse_status_kb


def test_content_length_response_and_leftover():
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Nimbus-Duration-Us: 41\r\n\r\n{}NEXT"
    res, used = parse_response(raw)
    assert (res.status, res.body, used) == (200, b"{}", len(raw) - 4)
    assert res.headers["x-nimbus-duration-us"] == "41"


@pytest.mark.parametrize("cut", [10, 30, 38, 42])
def test_incomplete_response_waits(cut):
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    assert parse_response(raw[:cut]) is None


def test_chunked_body_with_and_without_trailers():
    raw = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n3;x=y\r\nabc\r\n0\r\n\r\n"
    )
    res, used = parse_response(raw)
    assert res.body == b"{}abc" and used == len(raw)
    trailers = raw[:-2] + b"grpc-status: 0\r\n\r\n"
    res, used = parse_response(trailers)
    assert res.body == b"{}abc" and used == len(trailers)
    assert parse_response(raw[:-2]) is None


def test_bad_status_line_and_chunk_size():
    with pytest.raises(HttpError):
        parse_response(b"SSH-2.0\r\n\r\n")
    with pytest.raises(HttpError):
        parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")


def test_build_request_sets_length_and_host():
    raw = build_request(
        "POST", "127.0.0.1:1", "/v1/functions/f:invoke", {"Authorization": "Bearer k"}, b"{}"
    )
    assert raw.startswith(
        b"POST /v1/functions/f:invoke HTTP/1.1\r\nHost: 127.0.0.1:1\r\nContent-Length: 2\r\n"
    )
    assert raw.endswith(b"Authorization: Bearer k\r\n\r\n{}")


def test_job_round_trips_through_json_shapes():
    job = Job.from_dict(
        {
            "kind": "grpc",
            "host": "127.0.0.1",
            "port": 1,
            "paths": ["/a", "/b"],
            "metadata": [["authorization", "Bearer k"]],
            "capture": ["x"],
        }
    )
    assert job.paths == ("/a", "/b") and job.metadata == (("authorization", "Bearer k"),)
    assert job.bound_s() > job.duration_s + job.warmup_s


def test_outcome_records_errors_and_captured_headers():
    job = Job(kind="http", host="h", port=1, capture=("x-a",), keep_body=True)
    out = Outcome()
    out.record(0, 100, True, {"x-a": "1"}, job, "", "b0")
    out.record(1, 200, False, {}, job, "HTTP 429", "b1")
    data = out.to_json()
    assert data["headers"] == {"x-a": ["1", None]} and data["errors"] == 1
    assert (
        data["error_samples"] == ["HTTP 429"]
        and data["bodies"] == ["b0", "b1"]
        and data["index"] == [0, 1]
    )


def test_proc_status_rss():
    assert parse_status_kb("Name:\tx\nVmRSS:\t  2048 kB\n") == 2048
    assert parse_status_kb("Name:\tx\n") is None
