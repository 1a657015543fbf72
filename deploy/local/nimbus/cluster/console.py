"""The web console's routes in Envoy: the gateway serves console/static itself.

Each file under console/static becomes one route of Envoy's with a `direct_response` whose body
Envoy reads from the file when it loads its config, so `GET /console/...` needs no process of its
own and no hop past the gateway, in the local cluster and in compose alike (both render
deploy/local/envoy.yaml.tmpl). The files are the checkout's: a changed file is served after the
next start of Envoy (`make up`).

Every answer carries a strict Content-Security-Policy (scripts, styles and calls to this origin
only, no inline script, no frames) and headers that keep the page out of other sites' frames and
its address out of Referer headers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from nimbus.cluster.layout import REPO

STATIC_DIR = REPO / "console" / "static"
PREFIX = "/console/"
# Envoy keeps direct-response bodies in memory and refuses a file over the route table's limit
# (4 KiB unless raised): room for the editor's bundle and more.
MAX_BODY_BYTES = 8 * 1024 * 1024

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)

SECURITY_HEADERS: dict[str, str] = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    # The files change with the checkout: the browser asks again on every load.
    "cache-control": "no-cache",
}

CONTENT_TYPES: dict[str, str] = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
}


def content_type(path: Path) -> str:
    return CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")


def files(static_dir: Path = STATIC_DIR) -> Iterator[tuple[str, Path]]:
    """(URL path, file) for every file the console serves, sorted; index.html is also /console/."""
    if not static_dir.is_dir():
        return
    for path in sorted(p for p in static_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(static_dir).as_posix()
        if rel.startswith(".") or "/." in rel:
            continue
        if path.stat().st_size > MAX_BODY_BYTES:
            raise ValueError(f"{path}: over the console's {MAX_BODY_BYTES} byte limit per file")
        if rel == "index.html":
            yield PREFIX, path
        yield PREFIX + rel, path


def _headers(values: dict[str, str]) -> list[dict[str, object]]:
    return [
        {"append_action": "OVERWRITE_IF_EXISTS_OR_ADD", "header": {"key": k, "value": v}}
        for k, v in values.items()
    ]


def routes(static_dir: Path = STATIC_DIR) -> list[dict[str, object]]:
    """Envoy routes: /console redirects to /console/, each file is answered from its path, and
    any other path under /console/ is a 404."""
    no_transcoding = {
        "envoy.filters.http.grpc_json_transcoder": {
            "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig",
            "disabled": True,
        }
    }
    out: list[dict[str, object]] = [
        {"match": {"path": PREFIX.rstrip("/")}, "redirect": {"path_redirect": PREFIX}},
    ]
    for url, path in files(static_dir):
        out.append(
            {
                "match": {"path": url, "headers": [_get_or_head()]},
                "direct_response": {"status": 200, "body": {"filename": str(path)}},
                "response_headers_to_add": _headers(
                    {"content-type": content_type(path), **SECURITY_HEADERS}
                ),
                "typed_per_filter_config": no_transcoding,
            }
        )
    out.append(
        {
            "match": {"prefix": PREFIX},
            "direct_response": {"status": 404, "body": {"inline_string": "no such console page"}},
            "response_headers_to_add": _headers(SECURITY_HEADERS),
            "typed_per_filter_config": no_transcoding,
        }
    )
    return out


def _get_or_head() -> dict[str, object]:
    return {"name": ":method", "string_match": {"safe_regex": {"regex": "GET|HEAD"}}}


def render_routes(static_dir: Path = STATIC_DIR, indent: int = 14) -> str:
    """The routes as YAML block-sequence items, one flow mapping (JSON) per line; the first line
    goes where the template writes ${console_routes}, already indented."""
    pad = "\n" + " " * indent
    return pad.join("- " + json.dumps(r, sort_keys=True) for r in routes(static_dir))
