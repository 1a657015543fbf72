"""An invocation record keeps at most 256 KB of a result or an error (issue 15.4): a function
that returns 1 MB leaves its first 256 KB and its full size, not the whole of it, in Redis."""

from __future__ import annotations

import json

import pytest
import redis.asyncio as aioredis
from nimbus.invoker.events.records import EventRef, InvocationStatus, Move
from nimbus.invoker.stores.redis_records import PAYLOAD_MAX_BYTES, RedisRecords, record_key

pytestmark = pytest.mark.timeout(60)


async def test_big_results_and_errors_are_kept_capped_with_their_size(redis_url: str) -> None:
    store = RedisRecords(redis_url, 600)
    raw = aioredis.from_url(redis_url)
    try:
        ref = EventRef("inv-big", "ns", "fn", "", 1_800_000_000.0, 1)
        assert await store.create(ref, 1_800_000_000.0)
        big = json.dumps("é" * 600_000).encode()  # 1.2 MB, with two-byte characters to cut
        moved = await store.move(
            ref, Move(InvocationStatus.SUCCEEDED, attempts_delta=1, result=big), 1_800_000_001.0
        )
        assert moved.applied
        record = await store.get("inv-big")
        assert record is not None and record.result_size == len(big)
        kept = record.result_json.encode()
        assert len(kept) <= PAYLOAD_MAX_BYTES and big.startswith(kept)
        assert await raw.hstrlen(record_key("inv-big"), "result") <= PAYLOAD_MAX_BYTES

        small = EventRef("inv-small", "ns", "fn", "", 1_800_000_000.0, 2)
        assert await store.create(small, 1_800_000_000.0)
        error = b'{"errorType": "ValueError", "errorMessage": "x"}'
        await store.move(
            small, Move(InvocationStatus.FAILED, attempts_delta=1, error=error), 1_800_000_001.0
        )
        record = await store.get("inv-small")
        assert record is not None and record.error_json.encode() == error
        assert (record.error_size, record.result_size) == (0, 0)
    finally:
        await store.close()
        await raw.aclose()
