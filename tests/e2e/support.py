"""Helpers for the end-to-end tests: a plain HTTP client of the gateway and zip building."""

from __future__ import annotations

import base64
import http.client
import io
import json
import zipfile
from dataclasses import dataclass
from typing import Any


def zip_of(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return buf.getvalue()


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Gateway:
    """Plain HTTP/1.1 against the gateway, so the tests see exactly what a curl user sees."""

    def __init__(self, port: int, api_key: str) -> None:
        self.port = port
        self.api_key = api_key

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        key: str | None = "default",
        raw: bytes | None = None,
        timeout: float = 60,
    ) -> Response:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        headers = {"Content-Type": "application/json"}
        api_key = self.api_key if key == "default" else key
        if api_key is not None:
            headers["Authorization"] = f"Bearer {api_key}"
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        try:
            conn.request(method, path, body=data, headers=headers)
            res = conn.getresponse()
            return Response(res.status, {k.lower(): v for k, v in res.getheaders()}, res.read())
        finally:
            conn.close()

    def create(
        self, name: str, files: dict[str, str], handler: str = "main.handler", **extra: Any
    ) -> Response:
        body = {
            "name": name,
            "runtime": "python3.11",
            "handler": handler,
            "code": {"zip_base64": base64.b64encode(zip_of(files)).decode()},
            **extra,
        }
        return self.request("POST", "/v1/functions", body)

    def invoke(self, name: str, event: Any, *, raw: bytes | None = None, **kw: Any) -> Response:
        data = raw if raw is not None else json.dumps(event).encode()
        return self.request("POST", f"/v1/functions/{name}:invoke", raw=data, **kw)
