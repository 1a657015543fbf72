"""`nimbus publish` and Client.publish: the route, the subject as one path segment, the body."""

from __future__ import annotations

import io
import json
from typing import Any

from nimbus.cli.commands import Context
from nimbus.cli.main import build_parser
from nimbus.cli.output import Console
from nimbus.client import Client
from nimbus.client.transport import Response


class FakeTransport:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, bytes | None]] = []

    def request(self, method: str, path: str, body: bytes | None, headers: Any) -> Response:
        self.calls.append((method, path, body))
        answer = {"subject": "orders.created", "sequence": "7", "duplicate": False}
        return Response(200, "OK", {}, json.dumps(answer).encode())

    def close(self) -> None:
        pass


def client() -> tuple[Client, FakeTransport]:
    c = Client("http://127.0.0.1:1", "key", env={}, cwd="/")
    transport = FakeTransport()
    c._transport = transport  # type: ignore[assignment]
    return c, transport


def test_client_publish_posts_the_message_on_the_subject_route():
    c, transport = client()
    assert c.publish("orders.created", {"id": 1})["sequence"] == "7"
    assert transport.calls == [("POST", "/v1/subjects/orders.created:publish", b'{"id":1}')]
    c.publish("a/b c")
    assert transport.calls[-1][1] == "/v1/subjects/a%2Fb%20c:publish"


def test_cli_publish():
    c, transport = client()
    args = build_parser().parse_args(["publish", "orders.created", "-d", '{"id": 2}'])
    out = io.StringIO()
    ctx = Context(console=Console(out, io.StringIO(), {}), make_client=lambda: c, json=args.json)
    assert args.func(ctx, args) == 0
    assert transport.calls == [("POST", "/v1/subjects/orders.created:publish", b'{"id": 2}')]
    assert out.getvalue() == "orders.created #7\n"
