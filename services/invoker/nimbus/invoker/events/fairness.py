"""Which namespace's event an invoker starts next, and how many events it asks each namespace's
consumer for. Pure (issue 15.4: async dispatch fair across namespaces).

Each namespace has its own JetStream consumer (a lane), so one namespace's backlog never stands in
front of another's events in a queue. The invoker's NIMBUS_ASYNC_WORKERS slots are then shared
max-min fairly: a free slot goes to the namespace with an event at hand and the fewest events
running (ties: the one that started an event least recently), so a namespace that floods gets
every slot nobody else wants and no more than an even share of the ones they do. A namespace
never holds more than namespace_cap(workers) slots, so a newcomer's first event finds one free at
once instead of waiting for a flood's running calls to end.

The asks keep a few events at hand per lane: every lane asks for at least one (a quiet
namespace's first event arrives at once), and a busy lane (events arrived lately) for its share
of the free slots, so one busy namespace alone fills every slot as a single consumer did.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def namespace_cap(workers: int) -> int:
    """The most slots one namespace may hold: all but an eighth, kept for the others."""
    return max(1, workers - workers // 8)


def share(workers: int, busy_lanes: int) -> int:
    """An even share of the slots among the busy lanes (rounded up)."""
    return max(1, -(-workers // max(1, busy_lanes)))


def ask_room(workers: int, running_total: int, running: int, busy: bool, busy_lanes: int) -> int:
    """How many events a lane keeps asked for or at hand: one when quiet; when busy, its share
    of the free slots, within what it may still run."""
    if not busy:
        return 1
    free = workers - running_total
    room = min(free, share(workers, busy_lanes), namespace_cap(workers) - running)
    return max(1, room)


def next_namespace(
    order: Iterable[str], held: Mapping[str, int], running: Mapping[str, int], cap: int
) -> str | None:
    """The namespace whose event starts in the next free slot: of those with an event at hand
    and below cap, the one with the fewest running; order (least recently started first) breaks
    ties. None when no event can start."""
    best: str | None = None
    best_running = cap
    for namespace in order:
        if held.get(namespace, 0) <= 0:
            continue
        n = running.get(namespace, 0)
        if n < best_running:
            best, best_running = namespace, n
    return best
