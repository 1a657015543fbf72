"""The invoker listener's request parser (llhttp through httptools): framing, what RFC 9112 makes
a server refuse, and a hypothesis fuzz that holds every run to a deadline, so a parser that loops
fails the test instead of hanging it."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nimbus.invoker.http.server import MAX_HEAD_BYTES, HttpError, HttpRequest, RequestParser

pytestmark = pytest.mark.timeout(120)

# Each parse is bounded by this: a parser that spins on a bad chunk size fails here.
DEADLINE_S = 2.0
MAX_BODY = 1000


@contextlib.contextmanager
def deadline(seconds: float = DEADLINE_S) -> Iterator[None]:
    """Raises TimeoutError in the code under it after `seconds` (a pure-Python loop included)."""

    def expired(signum: int, frame: FrameType | None) -> None:
        raise TimeoutError(f"the parser ran over {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


Parsed = tuple[str, str, str, list[tuple[str, str]], bytes]


def parse_all(raw: bytes, step: int = 0, max_body: int = MAX_BODY) -> tuple[list[Parsed], int]:
    """Every request in raw, fed in pieces of `step` bytes (all at once for 0), and the status
    of the error that ended the connection (0: none; a cut request just ends it)."""
    parser, got = RequestParser(max_body), []
    with deadline():
        try:
            pieces = [raw] if step <= 0 else [raw[i : i + step] for i in range(0, len(raw), step)]
            for piece in pieces:
                parser.feed(piece)
                while (req := parser.next()) is not None:
                    got.append((req.method, req.path, req.query, req.headers, req.body))
            parser.at_eof()
        except HttpError as err:
            return got, err.status
    return got, 0


def read(raw: bytes, max_body: int = MAX_BODY) -> HttpRequest | None:
    parser = RequestParser(max_body)
    with deadline():
        parser.feed(raw)
        req = parser.next()
        if req is None:
            parser.at_eof()
    return req


def status_of(raw: bytes) -> int:
    with pytest.raises(HttpError) as err:
        read(raw)
    return err.value.status


def test_head_and_keep_alive():
    req = read(
        b"POST /fn/ns/hello/a/b?x=1&x=2&y= HTTP/1.1\r\nHost: h\r\nX-Thing:  v \r\n"
        b"Connection: close\r\n\r\n"
    )
    assert req is not None
    assert (req.method, req.path, req.query) == ("POST", "/fn/ns/hello/a/b", "x=1&x=2&y=")
    assert req.header("x-thing") == "v" and req.header("host") == "h" and not req.keep_alive
    req = read(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert req is not None and req.keep_alive and req.version == "HTTP/1.1"
    req = read(b"GET / HTTP/1.0\r\n\r\n")
    assert req is not None and not req.keep_alive and req.version == "HTTP/1.0"


def test_read_request_bodies():
    req = read(b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello")
    assert req is not None and req.body == b"hello"
    req = read(
        b"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n3;ext\r\n!!!\r\n0\r\n\r\n"
    )
    assert req is not None and req.body == b"hello!!!"
    assert read(b"") is None
    assert status_of(b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5000\r\n\r\n") == 413
    chunked_over = b"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n"
    assert status_of(chunked_over + b"x" * 1024) == 413


def test_any_pieces_and_pipelined_requests():
    raw = (
        b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
        b"POST /b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n3;ext\r\n!!!\r\n0\r\nx-t: 1\r\n\r\n"
        b"GET /c?q=1 HTTP/1.1\r\nHost: h\r\n\r\n"
    )
    for step in (1, 7, len(raw)):
        parser, got = RequestParser(MAX_BODY), []
        for i in range(0, len(raw), step):
            parser.feed(raw[i : i + step])
            while (req := parser.next()) is not None:
                got.append((req.method, req.path, req.query, req.body, req.headers))
        assert got == [
            ("POST", "/a", "", b"hello", [("host", "h"), ("content-length", "5")]),
            # The trailer (x-t) is dropped, never merged into the headers.
            ("POST", "/b", "", b"hello!!!", [("host", "h"), ("transfer-encoding", "chunked")]),
            ("GET", "/c", "q=1", b"", [("host", "h")]),
        ]
        assert parser.buffered == 0 and not parser.in_body


def test_requests_before_a_bad_one_are_still_answered():
    got, status = parse_all(
        b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\nBad Name: 1\r\n\r\n"
    )
    assert [g[1] for g in got] == ["/a"] and status == 400


def test_limits_and_cut_requests():
    assert status_of(b"GET / HTTP/1.1\r\nx: " + b"y" * 70_000) == 431
    many = b"".join(b"x-%d: %s\r\n" % (i, b"v" * 100) for i in range(700))
    assert status_of(b"GET / HTTP/1.1\r\nHost: h\r\n" + many + b"\r\n") == 431
    # Trailers (or a chunk extension) that never end are cut off like a head (within a read).
    head = b"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert parse_all(head + b"0\r\nx: " + b"y" * 2 * MAX_HEAD_BYTES, step=4096)[1] == 400
    assert parse_all(head + b"1;" + b"e" * 2 * MAX_HEAD_BYTES, step=4096)[1] == 400
    # A cut head is a 400 at EOF; a cut body just ends the connection.
    assert status_of(b"GET / HTTP/1.1\r\nHost: h") == 400
    assert read(b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhel") is None


H = b"POST /x HTTP/1.1\r\nHost: h\r\n"


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        # Issue 16.6: the old parser span forever on a negative chunk size, raised ValueError
        # on a superscript digit, and let the rest through.
        (H + b"Transfer-Encoding: chunked\r\n\r\n-fff\r\n", 400),
        (H + b"Content-Length: \xb2\r\n\r\n", 400),  # latin-1 superscript two
        (H + "Content-Length: ²\r\n\r\n".encode(), 400),
        (H + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400),
        (H + b"Content-Length: 1, 2\r\n\r\nab", 400),
        (H + b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        (H + b"Transfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n0\r\n\r\n", 400),
        (H + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 400),
        (H + b"Transfer-Encoding: chunked, gzip\r\n\r\n", 400),
        (H + b"Bad Name: 1\r\n\r\n", 400),
        (H + b"Host : h\r\n\r\n", 400),
        # RFC 9112 beyond the list.
        (H + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
        (H + b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501),
        (b"POST /x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        (H + b"Content-Length: -1\r\n\r\n", 400),
        (H + b"Content-Length: +1\r\n\r\na", 400),
        (H + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (H + b"Transfer-Encoding: chunked\r\n\r\n" + b"f" * 17 + b"\r\n", 400),
        (H + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n", 400),  # obs-fold
        (b"GET / HTTP/1.1\nHost: h\n\n", 400),  # bare LF
        (b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x00b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n Host: h\r\n\r\n", 400),
        (b"GET http://h/x HTTP/1.1\r\nHost: h\r\n\r\n", 400),  # not origin-form
        (b"GET /", 400),
        (b"GET / HTTP/1.2\r\nHost: h\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505),
        (b"BREW / HTTP/1.1\r\nHost: h\r\n\r\n", 501),
        (b"get / HTTP/1.1\r\nHost: h\r\n\r\n", 501),
    ],
)
def test_refuses_what_rfc_9112_refuses(raw: bytes, status: int):
    assert status_of(raw) == status
    # The same whatever the pieces the bytes come in.
    assert parse_all(raw, step=1) == ([], status)


def test_an_upgrade_is_answered_then_the_connection_closes():
    parser = RequestParser(MAX_BODY)
    parser.feed(
        b"GET /a HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
        b"\x00\x01 not http"
    )
    req = parser.next()
    assert req is not None and req.path == "/a" and not req.keep_alive
    assert parser.next() is None


# -- hypothesis ------------------------------------------------------------------------------

_TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-!#$%&'*+.^_`|~", min_size=1)
_VALUE = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=20)
_PATH = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-._~%/=&", max_size=30)


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, Parsed]:
    """A valid request (Content-Length or chunked, cut into random chunks) and what it parses to."""
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]))
    path = "/" + draw(_PATH)
    query = draw(st.one_of(st.just(""), _PATH))
    target = f"{path}?{query}" if query else path
    extra = draw(
        st.lists(
            st.tuples(_TOKEN, _VALUE).filter(
                lambda h: h[0] not in ("host", "content-length", "transfer-encoding")
            ),
            max_size=5,
        )
    )
    body = draw(st.binary(max_size=200))
    headers = [("host", "h"), *extra]
    chunked = draw(st.booleans())
    if chunked:
        headers.append(("transfer-encoding", "chunked"))
        cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=4)))
        parts = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
        framed = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts if p) + b"0\r\n\r\n"
    else:
        headers.append(("content-length", str(len(body))))
        framed = body
    head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers)
    raw = head.encode() + b"\r\n" + framed
    return raw, (method, path, query, [(n, v.strip()) for n, v in headers], body)


_FUZZ = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)


@_FUZZ
@given(st.lists(requests(), min_size=1, max_size=4), st.integers(0, 64))
def test_fuzz_valid_requests_round_trip_in_any_pieces(reqs: list[tuple[bytes, Parsed]], step: int):
    raw = b"".join(r for r, _ in reqs)
    assert parse_all(raw, step) == ([p for _, p in reqs], 0)


@_FUZZ
@given(st.binary(max_size=400), st.integers(0, 64))
def test_fuzz_any_bytes_end_in_requests_or_an_http_error(raw: bytes, step: int):
    got, status = parse_all(raw, step)
    assert status in (0, 400, 413, 431, 501, 505)
    # The pieces never change the outcome.
    assert parse_all(raw) == (got, status)


@_FUZZ
@given(
    requests(),
    st.lists(st.tuples(st.integers(0, 10_000), st.binary(min_size=0, max_size=6)), max_size=4),
    st.integers(0, 16),
)
def test_fuzz_mutated_requests_never_hang(
    req: tuple[bytes, Parsed], edits: list[tuple[int, bytes]], step: int
):
    raw = req[0]
    for at, data in edits:  # replace a few bytes anywhere (the head, the chunk sizes, the body)
        at %= len(raw) + 1
        raw = raw[:at] + data + raw[at + len(data) :]
    for token in (b"-", b"\xc2\xb2", b" ", b"\n", b"x"):  # the classic smuggling bytes
        got, status = parse_all(raw.replace(b"\r\n", b"\r\n" + token, 1), step)
        assert status in (0, 400, 413, 431, 501, 505)
    got, status = parse_all(raw, step)
    assert status in (0, 400, 413, 431, 501, 505)
    assert parse_all(raw) == (got, status)


_FRAMING = st.lists(st.sampled_from(list(b"0123456789abcdefABCDEF-+ ;=\t,x\xb2\xb9")), max_size=12)


@_FUZZ
@given(_FRAMING, _FRAMING, st.integers(0, 16))
def test_fuzz_chunk_sizes_and_lengths(size: list[int], length: list[int], step: int):
    """The bytes that broke the old parser, where they do harm: a chunk size line, a length."""
    chunk = H + b"Transfer-Encoding: chunked\r\n\r\n" + bytes(size) + b"\r\nabc\r\n0\r\n\r\n"
    sized = H + b"Content-Length: " + bytes(length) + b"\r\n\r\nabc"
    for raw in (chunk, sized):
        got, status = parse_all(raw, step)
        assert status in (0, 400, 413, 501)  # 501: a short length leaves "abc" as a method
        assert all(body in (b"", b"abc") or len(body) <= MAX_BODY for *_, body in got)
