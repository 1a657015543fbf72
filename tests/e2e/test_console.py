"""The web console (issue 20) in a real browser: Debian's Chromium driven by Playwright, against
the session's cluster through the gateway, as a user at /console/ sees it.

Every journey fails on a console error or an uncaught exception in the page (the one expected
401 of a refused key aside). The screenshots of each page go to docs/console/ (the README shows
them).
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support import Gateway, zip_of

REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "docs" / "console"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
REQUEST_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

pytestmark = pytest.mark.timeout(300)

sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        pytest.skip(f"{CHROMIUM} missing: apt-get install chromium (scripts/install.sh does)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


class Tab:
    """One browser tab on the console, with everything its console and page errors said."""

    def __init__(self, page: Any, base: str) -> None:
        self.page = page
        self.base = base
        self.errors: list[str] = []
        self.allowed: list[re.Pattern[str]] = []
        page.on("console", self._console)
        page.on("pageerror", lambda err: self.errors.append(f"uncaught: {err}"))

    def _console(self, msg: Any) -> None:
        if msg.type == "error":
            self.errors.append(f"console.error: {msg.text} ({msg.location.get('url', '')})")

    def allow(self, pattern: str) -> None:
        self.allowed.append(re.compile(pattern))

    def unexpected_errors(self) -> list[str]:
        return [e for e in self.errors if not any(p.search(e) for p in self.allowed)]

    def goto(self, fragment: str = "") -> None:
        self.page.goto(self.base + fragment)

    def sign_in(self, key: str) -> None:
        self.goto()
        self.page.fill("#api-key", key)
        self.page.keyboard.press("Enter")
        self.page.wait_for_selector("#sign-out")

    def shot(self, name: str, *, full_page: bool = False, mask: tuple[str, ...] = ()) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        # The caret blinks and the clock moves: screenshots of a settled page.
        self.page.wait_for_timeout(300)
        self.page.screenshot(
            path=str(SHOTS / name),
            full_page=full_page,
            # Secrets shown once (a new key) are painted over in the docs' pictures.
            mask=[self.page.locator(m) for m in mask],
            mask_color="#c9d1e6",
        )

    def text(self, selector: str) -> str:
        return str(self.page.text_content(selector) or "")


@pytest.fixture
def tab(browser: Any, gw: Gateway) -> Iterator[Tab]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(30_000)
    t = Tab(page, f"http://127.0.0.1:{gw.port}/console/")
    try:
        yield t
    finally:
        context.close()
    assert t.unexpected_errors() == [], "the console logged errors"


def until(check: Callable[[], Any], timeout_s: float = 20, every_s: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(every_s)


def test_the_console_is_served_by_the_gateway_with_a_strict_policy(gw: Gateway) -> None:
    res = gw.request("GET", "/console/", key=None)
    assert res.status == 200 and res.headers["content-type"].startswith("text/html")
    csp = res.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert res.headers["x-frame-options"] == "DENY"
    assert b"<script " not in res.body.replace(b'<script type="module" src=', b"")
    assert gw.request("GET", "/console", key=None).status == 301
    js = gw.request("GET", "/console/js/main.js", key=None)
    assert js.status == 200 and js.headers["content-type"].startswith("text/javascript")
    assert gw.request("GET", "/console/no-such-file.js", key=None).status == 404


def test_sign_in_with_a_bad_key_then_a_good_one(tab: Tab, gw: Gateway) -> None:
    # The refused key's 401 is the one error the browser itself logs here.
    tab.allow(r"status of 401 .*/v1/functions")
    tab.goto()
    assert tab.page.evaluate("document.activeElement.id") == "api-key"
    tab.page.fill("#api-key", "not-a-key")
    tab.page.click("#sign-in")
    tab.page.wait_for_selector(".message.error")
    assert "refused" in tab.text(".message.error") and "401" in tab.text(".message.error")
    tab.shot("signin.png")
    assert tab.page.evaluate("sessionStorage.length") == 0

    tab.page.fill("#api-key", gw.api_key)
    tab.page.click("#sign-in")
    tab.page.wait_for_selector("#sign-out")
    # The key is in this tab's sessionStorage, nowhere else the page keeps things.
    assert tab.page.evaluate("sessionStorage.getItem('nimbus.apiKey')") == gw.api_key
    assert tab.page.evaluate("localStorage.length") == 0
    assert gw.api_key not in tab.page.url


def test_keyboard_only_sign_in_and_open_a_function(tab: Tab, gw: Gateway) -> None:
    assert gw.create("console-kbd", {"main.py": "def handler(e, c):\n    return 1\n"}).status == 200
    tab.goto()
    tab.page.keyboard.type(gw.api_key)
    tab.page.keyboard.press("Enter")
    tab.page.wait_for_selector('#functions tr[data-name="console-kbd"]')
    # The search box has the focus: narrow the list, Tab to the function's link, then Enter.
    assert tab.page.evaluate("document.activeElement.id") == "search"
    tab.page.keyboard.type("console-kbd")
    for _ in range(10):
        tab.page.keyboard.press("Tab")
        if tab.page.evaluate("document.activeElement.textContent") == "console-kbd":
            break
    else:
        raise AssertionError("the function's link is not reachable with Tab")
    tab.page.keyboard.press("Enter")
    tab.page.wait_for_selector(".cm-content")
    assert tab.page.url.endswith("#/functions/console-kbd/code")


def test_functions_list_and_search(tab: Tab, gw: Gateway) -> None:
    for name, memory in (("console-list-a", 128), ("console-list-b", 256)):
        assert (
            gw.create(
                name, {"main.py": "def handler(e, c):\n    return 1\n"}, memory_mb=memory
            ).status
            == 200
        )
    tab.sign_in(gw.api_key)
    tab.page.wait_for_selector('#functions tr[data-name="console-list-b"]')
    row = tab.text('#functions tr[data-name="console-list-b"]')
    assert "python3.11" in row and "256 MB" in row
    tab.shot("functions.png")
    tab.page.fill("#search", "list-b")
    until(lambda: tab.page.locator("#functions tbody tr").count() == 1)
    assert tab.page.is_visible('#functions tr[data-name="console-list-b"]')
    tab.page.fill("#search", "nothing-matches-this")
    tab.page.wait_for_selector(".empty:not([hidden])")


def test_create_from_the_python_template_edit_save_and_see_the_new_code_answer(
    tab: Tab, gw: Gateway
) -> None:
    tab.sign_in(gw.api_key)
    tab.page.click("#create-function")
    tab.page.fill("#fn-name", "console-py")
    tab.shot("create.png")
    tab.page.click("#create")
    tab.page.wait_for_selector(".cm-content")
    assert tab.page.url.endswith("#/functions/console-py/code")
    assert "def handler" in tab.text(".cm-content")
    before = gw.invoke("console-py", {"name": "Ada"})
    assert before.status == 200 and before.json()["message"] == "Hello, Ada!"

    # Keyboard only: the editor has the focus; type a line at the end, then Ctrl-S.
    assert tab.page.evaluate("document.activeElement.classList.contains('cm-content')")
    tab.page.keyboard.press("Control+End")
    tab.page.keyboard.insert_text(
        '\n\ndef handler(event, context):\n    return {"edited": True, "name": event.get("name")}\n'
    )
    until(lambda: "Unsaved changes in 1 file" in tab.text("#save-status"))
    tab.shot("code.png")
    tab.page.keyboard.press("Control+s")
    until(lambda: "Deployed · revision" in tab.text("#save-status"), 30)
    after = gw.invoke("console-py", {"name": "Ada"})
    assert after.status == 200 and after.json() == {"edited": True, "name": "Ada"}

    # And in the Test tab, with the template's saved event.
    tab.page.click("#tab-test")
    tab.page.click("#invoke")
    tab.page.wait_for_selector("#result-status")
    assert json.loads(tab.text("#result-body")) == {"edited": True, "name": "Ada"}


def test_code_page_keeps_binary_files_through_a_save(tab: Tab, gw: Gateway) -> None:
    blob = bytes(range(256)) * 8
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("main.py", "def handler(e, c):\n    return 'v1'\n")
        zf.writestr("data/blob.bin", blob)
        info = zipfile.ZipInfo("run.sh")
        info.external_attr = 0o100755 << 16
        zf.writestr(info, "#!/bin/sh\necho hi\n")
    body = {
        "name": "console-bin",
        "runtime": "python3.11",
        "handler": "main.handler",
        "code": {"zip_base64": base64.b64encode(buf.getvalue()).decode()},
    }
    assert gw.request("POST", "/v1/functions", body).status == 200
    for version in ("v1", "v2"):
        files = gw.request("GET", f"/{version}/functions/console-bin/code").json()["files"]
        by_path = {f["path"]: f for f in files}
        assert by_path["data/blob.bin"]["omitted"] == "binary"
        assert by_path["data/blob.bin"]["content"] == ""
        assert by_path["main.py"]["content"].startswith("def handler")

    tab.sign_in(gw.api_key)
    tab.goto("#/functions/console-bin/code")
    tab.page.wait_for_selector(".cm-content")
    tab.page.click('li[data-path="data/blob.bin"] button.file')
    assert "binary file" in tab.text(".editor-col .help")
    tab.page.click('li[data-path="main.py"] button.file')
    tab.page.keyboard.press("Control+End")
    tab.page.keyboard.insert_text("# edited in the console\n")
    tab.page.click("#save")
    until(lambda: "Deployed · revision" in tab.text("#save-status"), 30)

    stored = gw.request("GET", "/v1/functions/console-bin/code?format=zip").json()
    with zipfile.ZipFile(io.BytesIO(base64.b64decode(stored["zip_base64"]))) as zf:
        assert zf.read("data/blob.bin") == blob
        assert zf.read("main.py").decode().endswith("# edited in the console\n")
        assert zf.getinfo("run.sh").external_attr >> 16 == 0o100755
    assert gw.invoke("console-bin", {}).json() == "v1"


def test_test_tab_with_a_saved_event(tab: Tab, gw: Gateway) -> None:
    tab.sign_in(gw.api_key)
    tab.page.click("#create-function")
    tab.page.check('input[value="node-hello"]')
    tab.page.fill("#fn-name", "console-node")
    tab.page.click("#create")
    tab.page.wait_for_selector(".cm-content")
    assert "exports.handler" in tab.text(".cm-content")
    tab.page.click("#tab-test")
    tab.page.fill("#event-name", "grace")
    tab.page.fill("#event-body", '{"name": "Grace"}')
    tab.page.click("#save-event")
    # Saved: still there after a reload.
    tab.page.reload()
    tab.page.wait_for_selector("#event-select")
    assert tab.page.locator("#event-select option").all_text_contents() == ["hello", "grace"]
    tab.page.select_option("#event-select", "grace")
    tab.page.click("#invoke")
    tab.page.wait_for_selector("#result-status")
    assert tab.text("#result-status") == "Succeeded"
    assert json.loads(tab.text("#result-body"))["message"] == "Hello, Grace!"
    assert REQUEST_ID.match(tab.text("#result-request-id"))
    assert tab.text("#result-cold-start").startswith(("yes", "no"))
    assert tab.text("#result-duration").endswith(" ms")
    assert re.fullmatch(r"\d+ ms", tab.text("#result-billed"))
    assert "hello called for Grace" in tab.text("#result-log")
    tab.shot("test.png", full_page=True)


def test_output_and_logs_are_shown_as_text_never_as_html(tab: Tab, gw: Gateway) -> None:
    markup = "<img src=x id=injected onerror=alert(1)>"
    code = f"def handler(event, context):\n    print({markup!r})\n    return {markup!r}\n"
    assert gw.create("console-html", {"main.py": code}).status == 200
    tab.sign_in(gw.api_key)
    tab.goto("#/functions/console-html/test")
    tab.page.click("#invoke")
    tab.page.wait_for_selector("#result-status")
    assert markup in tab.text("#result-body") and markup in tab.text("#result-log")
    tab.page.click("#tab-logs")
    until(lambda: markup in tab.text("#log-lines") or tab.page.click("#log-refresh"))
    assert tab.page.locator("#injected").count() == 0


def test_logs_with_a_request_id_filter(tab: Tab, gw: Gateway) -> None:
    code = "def handler(event, context):\n    print('line for', event['who'])\n    return 1\n"
    assert gw.create("console-logs", {"main.py": code}).status == 200
    first = gw.invoke("console-logs", {"who": "first"}).headers["x-nimbus-request-id"]
    gw.invoke("console-logs", {"who": "second"})
    tab.sign_in(gw.api_key)
    tab.goto("#/functions/console-logs/logs")

    def both() -> bool:
        text = tab.text("#log-lines")
        if "line for first" in text and "line for second" in text:
            return True
        tab.page.click("#log-refresh")
        return False

    until(both, 30, 1)
    tab.shot("logs.png")
    tab.page.fill("#log-request-id", first)
    tab.page.keyboard.press("Enter")
    until(lambda: "line for second" not in tab.text("#log-lines"))
    assert "line for first" in tab.text("#log-lines")
    assert first in tab.text("#log-summary")


def test_metrics_charts(tab: Tab, gw: Gateway) -> None:
    code = (
        "def handler(event, context):\n"
        "    if event.get('fail'):\n"
        "        raise ValueError('no')\n"
        "    return 1\n"
    )
    assert gw.create("console-metrics", {"main.py": code}).status == 200
    for event in ({}, {}, {}, {"fail": True}):
        assert gw.invoke("console-metrics", event).status == 200
    tab.sign_in(gw.api_key)
    tab.goto("#/functions/console-metrics/metrics")

    def counted() -> bool:
        text = tab.text("#charts")
        if "invocations 4" in text and "errors 1" in text:
            return True
        tab.page.click("#metrics-refresh")
        return False

    until(counted, 30, 1)
    assert tab.page.locator("#charts svg.chart").count() == 4
    assert re.search(r"cold starts [1-9]", tab.text("#charts"))
    tab.shot("metrics.png")


def test_publish_versions_and_shift_an_alias_with_the_slider(tab: Tab, gw: Gateway) -> None:
    def code(tag: str) -> dict[str, str]:
        return {"main.py": f"def handler(event, context):\n    return {tag!r}\n"}

    assert gw.create("console-alias", code("one")).status == 200
    tab.sign_in(gw.api_key)
    tab.goto("#/functions/console-alias/versions")
    tab.page.fill("#version-description", "first cut")
    tab.page.click("#publish")
    tab.page.wait_for_selector('#versions tr[data-version="1"]')
    body = {"code": {"zip_base64": base64.b64encode(zip_of(code("two"))).decode()}}
    assert gw.request("PUT", "/v1/functions/console-alias/code", body).status == 200
    tab.page.click("#publish")
    tab.page.wait_for_selector('#versions tr[data-version="2"]')

    tab.page.fill("#alias-name", "live")
    tab.page.select_option("#alias-version", "1")
    tab.page.select_option("#alias-second", "2")
    tab.page.fill("#alias-weight", "50")
    assert "50% to version 2" in tab.text("#alias-weight-text")
    tab.page.click("#save-alias")
    tab.page.wait_for_selector('#aliases tr[data-alias="live"]')
    assert "2 (50%)" in tab.text('#aliases tr[data-alias="live"]')
    tab.shot("versions.png")

    alias = gw.request("GET", "/v1/functions/console-alias/aliases/live").json()
    assert alias["version"] == "1" and alias["routing"] == {"version": "2", "weight": 0.5}
    answers = {
        gw.request("POST", "/v1/functions/console-alias:invoke?qualifier=live", {}).json()
        for _ in range(24)
    }
    assert answers == {"one", "two"}
    # The code of a version, as the editor would read it.
    files = gw.request("GET", "/v1/functions/console-alias/code?qualifier=1").json()["files"]
    assert "'one'" in files[0]["content"]


def test_configuration_saves_and_a_stale_form_is_refused_in_place(tab: Tab, gw: Gateway) -> None:
    code = "import os\n\ndef handler(event, context):\n    return os.environ.get('GREETING')\n"
    assert gw.create("console-cfg", {"main.py": code}).status == 200
    tab.sign_in(gw.api_key)
    tab.goto("#/functions/console-cfg/config")
    tab.page.fill("#cfg-memory_mb", "256")
    tab.page.fill("#cfg-env", "GREETING=hi from the console")
    tab.page.click("#cfg-save")
    until(lambda: "Saved · revision" in tab.text("#cfg-form .message"))
    tab.shot("config.png")
    fn = gw.request("GET", "/v1/functions/console-cfg").json()
    assert fn["memory_mb"] == 256 and fn["env"] == {"GREETING": "hi from the console"}
    assert gw.invoke("console-cfg", {}).json() == "hi from the console"

    # Someone else changes the function: this form's revision is stale, and the 409 says so.
    assert gw.request("PATCH", "/v1/functions/console-cfg", {"timeout_s": 9}).status == 200
    tab.page.fill("#cfg-memory_mb", "512")
    tab.page.click("#cfg-save")
    tab.page.wait_for_selector("#cfg-form .message.error")
    assert "409" in tab.text("#cfg-form .message.error")
    assert gw.request("GET", "/v1/functions/console-cfg").json()["memory_mb"] == 256
    tab.allow(r"status of 409 .*/v1/functions/console-cfg")


def test_revoke_a_key_and_its_tab_is_signed_out(tab: Tab, gw: Gateway, browser: Any) -> None:
    tab.sign_in(gw.api_key)
    tab.page.click("text=Keys")
    tab.page.fill("#key-namespace", "console-team")
    tab.page.fill("#key-description", "from the console")
    tab.page.click("#key-create")
    tab.page.wait_for_selector("#new-key-value")
    team_key = tab.text("#new-key-value").strip()
    key_id = tab.text("#new-key strong").split("(")[1].split(")")[0]
    tab.page.wait_for_selector(f'#keys tr[data-key-id="{key_id}"]')
    tab.shot("keys.png", mask=("#new-key-value",))

    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        team = Tab(context.new_page(), tab.base)
        team.allow(r"status of 401 .*/v1/functions")
        team.sign_in(team_key)
        team.page.wait_for_selector(".empty:not([hidden])")  # a new namespace: no functions

        tab.page.once("dialog", lambda dialog: dialog.accept())
        tab.page.click(f'#keys tr[data-key-id="{key_id}"] button')
        tab.page.wait_for_selector(f'#keys tr[data-key-id="{key_id}"]', state="detached")

        def signed_out() -> bool:
            team.goto("#/functions")
            team.page.reload()
            return team.page.locator("#api-key").count() == 1

        until(signed_out, 20, 1)
        assert team.page.evaluate("sessionStorage.length") == 0
        assert team.unexpected_errors() == []
    finally:
        context.close()


def test_usage_per_function_and_day(tab: Tab, gw: Gateway) -> None:
    assert (
        gw.create("console-usage", {"main.py": "def handler(e, c):\n    return 1\n"}).status == 200
    )
    for _ in range(3):
        assert gw.invoke("console-usage", {}).status == 200
    tab.sign_in(gw.api_key)
    tab.page.click("text=Usage")

    def listed() -> bool:
        row = tab.page.locator('#usage tr[data-function="console-usage"]')
        if row.count() and row.first.text_content().find("\t") < 0:
            cells = row.first.locator("td").all_text_contents()
            if cells[3] == "3":
                return True
        tab.page.click("#usage-show")
        return False

    until(listed, 30, 1)
    assert "requests" in tab.text("#usage-totals")
    assert tab.page.locator("figure svg.chart rect").count() >= 1
    tab.shot("usage.png")


def test_sign_out(tab: Tab, gw: Gateway) -> None:
    tab.sign_in(gw.api_key)
    tab.page.click("#sign-out")
    tab.page.wait_for_selector("#api-key")
    assert tab.page.evaluate("sessionStorage.getItem('nimbus.apiKey')") is None
    tab.goto("#/functions")
    tab.page.reload()
    tab.page.wait_for_selector("#api-key")
    assert tab.page.locator("#sign-out").count() == 0


def test_a_phone_width(browser: Any, gw: Gateway) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 780}, is_mobile=True)
    try:
        page = context.new_page()
        t = Tab(page, f"http://127.0.0.1:{gw.port}/console/")
        assert (
            gw.create("console-phone", {"main.py": "def handler(e, c):\n    return 1\n"}).status
            == 200
        )
        t.sign_in(gw.api_key)
        page.wait_for_selector('#functions tr[data-name="console-phone"]')
        t.shot("functions-phone.png")
        # Nothing wider than the screen.
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        assert t.unexpected_errors() == []
    finally:
        context.close()
