"""Paging of list calls (API v2): opaque page tokens and cutting a sorted list into pages. Pure.

A token names the last item of the previous page (by its sort key), not an offset, so a page
never repeats or skips an item that was there before and after a concurrent create or delete.
It also carries a fingerprint of what was listed (namespace, function, filter): a token from
another list is refused rather than silently misread.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from nimbus.common.errors import InvalidArgument

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    # "" on the last page.
    next_token: str


def scope_of(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16]


def encode_token(after: str, scope: str) -> str:
    raw = json.dumps({"a": after, "s": scope}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, scope: str) -> str:
    """The sort key the page starts after; InvalidArgument for a token this list did not issue."""
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        after, issued_for = data["a"], data["s"]
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise InvalidArgument(
            "page_token: not a token this API issued; pass next_page_token unchanged"
        ) from None
    if not isinstance(after, str) or issued_for != scope:
        raise InvalidArgument(
            "page_token: issued for another list (other filter or function); start again without it"
        )
    return after


def check_page_size(page_size: int) -> int:
    if page_size == 0:
        return DEFAULT_PAGE_SIZE
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidArgument(
            f"page_size: {page_size} is out of range; it must be between 1 and {MAX_PAGE_SIZE}"
        )
    return page_size


def page(
    items: Sequence[T], key: Callable[[T], str], page_size: int, token: str, scope: str
) -> Page[T]:
    """One page of items, which must be sorted by key (a string that sorts like the items)."""
    size = check_page_size(page_size)
    rest = list(items)
    if token:
        after = decode_token(token, scope)
        rest = [item for item in rest if key(item) > after]
    chosen = rest[:size]
    next_token = encode_token(key(chosen[-1]), scope) if len(rest) > size else ""
    return Page(chosen, next_token)


def version_key(version: str) -> str:
    """Version numbers sort as numbers ("2" before "10")."""
    return f"{int(version):012d}" if version.isdigit() else version
