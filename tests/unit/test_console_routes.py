"""The console's Envoy routes (nimbus.cluster.console): one direct response per file under
console/static, each with the strict Content-Security-Policy, and a 404 for any other path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from nimbus.cluster import console


def test_every_file_is_a_route_with_its_type_and_the_policy(tmp_path: Path) -> None:
    (tmp_path / "js").mkdir()
    (tmp_path / "index.html").write_text("<!doctype html>")
    (tmp_path / "js" / "main.js").write_text("1")
    (tmp_path / ".hidden").write_text("x")
    routes = console.routes(tmp_path)
    assert routes[0] == {"match": {"path": "/console"}, "redirect": {"path_redirect": "/console/"}}
    served = {r["match"]["path"]: r for r in routes[1:-1]}
    assert sorted(served) == ["/console/", "/console/index.html", "/console/js/main.js"]
    for path, route in served.items():
        headers = {
            h["header"]["key"]: h["header"]["value"] for h in route["response_headers_to_add"]
        }
        csp = headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert headers["x-content-type-options"] == "nosniff"
        expected = "text/javascript" if path.endswith(".js") else "text/html"
        assert headers["content-type"].startswith(expected)
    assert routes[-1]["match"] == {"prefix": "/console/"}
    assert routes[-1]["direct_response"]["status"] == 404


def test_the_rendered_lines_are_yaml_list_items(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("x")
    text = "routes:\n  " + console.render_routes(tmp_path, indent=2)
    parsed = yaml.safe_load(text)["routes"]
    assert parsed == json.loads(json.dumps(console.routes(tmp_path)))


def test_a_file_over_the_limit_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "big.js").write_text("x" * 10)
    monkeypatch.setattr(console, "MAX_BODY_BYTES", 5)
    with pytest.raises(ValueError, match="big.js"):
        console.routes(tmp_path)


def test_the_checkouts_console_is_in_the_routes() -> None:
    paths = [r["match"].get("path") for r in console.routes()]
    assert "/console/" in paths and "/console/vendor/editor.js" in paths
    assert all(p.stat().st_size <= console.MAX_BODY_BYTES for _, p in console.files())
