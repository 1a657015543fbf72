"""One timer for many per-call deadlines (nimbus.common.deadlines)."""

from __future__ import annotations

import asyncio

from nimbus.common.deadlines import Deadlines


async def test_each_key_is_due_at_its_own_deadline_and_a_discarded_one_never() -> None:
    loop = asyncio.get_running_loop()
    fired: list[tuple[str, int, float]] = []
    start = loop.time()
    d: Deadlines[str, int] = Deadlines(
        lambda key, value: fired.append((key, value, loop.time() - start))
    )
    d.add("late", start + 0.15, 3)
    d.add("early", start + 0.05, 1)  # earlier than the armed timer: re-armed for it
    d.add("gone", start + 0.02, 2)
    d.discard("gone")
    assert len(d) == 2 and d.armed
    await asyncio.sleep(0.25)
    assert [(k, v) for k, v, _ in fired] == [("early", 1), ("late", 3)]
    assert 0.05 <= fired[0][2] < 0.15 <= fired[1][2]
    assert len(d) == 0 and not d.armed


async def test_clear_cancels_the_timer() -> None:
    fired: list[str] = []
    d: Deadlines[str, None] = Deadlines(lambda key, _: fired.append(key))
    d.add("a", asyncio.get_running_loop().time() + 0.01, None)
    d.clear()
    await asyncio.sleep(0.05)
    assert fired == [] and not d.armed and len(d) == 0
