"""API v2's pure parts: page tokens and pages, tag filters and checks, batch invoke."""

from __future__ import annotations

import asyncio

import pytest
from nimbus.api.listing import matches
from nimbus.api.paging import MAX_PAGE_SIZE, decode_token, encode_token, page, scope_of, version_key
from nimbus.api.v2server import tag_filter
from nimbus.common.auth import Principal
from nimbus.common.errors import InvalidArgument, NotFound, Throttled
from nimbus.common.validation import check_tags
from nimbus.invoker.sync.batch import MAX_ITEMS, BatchInvoker, BatchItem
from nimbus.invoker.sync.invoke import InvokeResult


def test_pages_cover_every_item_once():
    items = [f"f{i:02d}" for i in range(7)]
    scope = scope_of("functions", "ns")
    seen, token, pages = [], "", 0
    while True:
        p = page(items, lambda s: s, 3, token, scope)
        seen += p.items
        pages += 1
        token = p.next_token
        if not token:
            break
    assert seen == items and pages == 3
    assert page(items, lambda s: s, 7, "", scope).next_token == ""
    assert page([], lambda s: s, 0, "", scope).items == []


def test_a_token_survives_inserts_and_deletes_before_it():
    scope = scope_of("functions", "ns")
    first = page(["a", "b", "c", "d"], lambda s: s, 2, "", scope)
    # "a" deleted and "aa" created meanwhile: the next page still starts after "b"
    assert page(["aa", "b", "c", "d"], lambda s: s, 2, first.next_token, scope).items == ["c", "d"]


def test_tokens_from_elsewhere_are_refused():
    token = encode_token("b", scope_of("functions", "ns-a"))
    assert decode_token(token, scope_of("functions", "ns-a")) == "b"
    with pytest.raises(InvalidArgument, match="page_token"):
        decode_token(token, scope_of("functions", "ns-b"))
    for bad in ("garbage", "e30", "!!!"):
        with pytest.raises(InvalidArgument, match="page_token"):
            decode_token(bad, "x")


@pytest.mark.parametrize("size", [-1, MAX_PAGE_SIZE + 1])
def test_page_size_range(size):
    with pytest.raises(InvalidArgument, match="page_size"):
        page([], lambda s: s, size, "", "x")


def test_versions_sort_as_numbers():
    assert sorted(["10", "2", "1"], key=version_key) == ["1", "2", "10"]


def test_tag_filters():
    assert tag_filter(["team=a", "env=prod=1"]) == {"team": "a", "env": "prod=1"}
    with pytest.raises(InvalidArgument, match="tag"):
        tag_filter(["team"])
    assert matches({"team": "a", "x": "1"}, {"team": "a"}) and not matches(
        {"team": "b"}, {"team": "a"}
    )
    assert matches({}, {})


def test_tag_checks():
    check_tags({"team": "payments", "cost-center": "1234", "a b/c:d": ""})
    for bad in (
        {"": "x"},
        {"k" * 129: "x"},
        {"nimbus:owner": "x"},
        {"k": "v" * 257},
        {"bad\nkey": "x"},
        {f"t{i}": "" for i in range(51)},
    ):
        with pytest.raises(InvalidArgument, match="tags"):
            check_tags(bad)


class FakeInvoker:
    def __init__(self) -> None:
        self.running = 0
        self.peak = 0

    async def invoke(self, who, name, qualifier, payload, deadline_s):
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await asyncio.sleep(0.01)
            if name == "missing":
                raise NotFound("function 'missing' not found")
            if name == "busy":
                raise Throttled("too many")
            return InvokeResult("rid", payload, "", 1, 1, False, "$LATEST")
        finally:
            self.running -= 1


async def test_batch_keeps_order_and_isolates_failures():
    fake = FakeInvoker()
    batch = BatchInvoker(fake, max_parallel=3)
    who = Principal("ns", "k", False)
    items = [BatchItem("echo", "", f'{{"i": {i}}}'.encode()) for i in range(8)]
    items += [BatchItem("missing", "", b"{}"), BatchItem("busy", "", b"{}")]
    out = await batch.invoke_all(who, items, 10.0)
    assert [o.result.payload for o in out[:8]] == [f'{{"i": {i}}}'.encode() for i in range(8)]
    assert isinstance(out[8].error, NotFound) and isinstance(out[9].error, Throttled)
    assert fake.peak == 3
    with pytest.raises(InvalidArgument, match="items"):
        await batch.invoke_all(who, [], 10.0)
    with pytest.raises(InvalidArgument, match="items"):
        await batch.invoke_all(who, items * (MAX_ITEMS // len(items) + 1), 10.0)
