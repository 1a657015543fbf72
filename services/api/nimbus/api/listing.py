"""List calls of API v2: tag filters and paging over the same core as v1's lists."""

from __future__ import annotations

from collections.abc import Mapping

from nimbus.api.functions import FunctionsApi
from nimbus.api.paging import Page, page, scope_of, version_key
from nimbus.api.versions import VersionsApi
from nimbus.common import validation
from nimbus.common.auth import Principal
from nimbus.common.model import FunctionRecord, VersionRecord


def matches(tags: Mapping[str, str], tag_filter: Mapping[str, str]) -> bool:
    return all(tags.get(k) == v for k, v in tag_filter.items())


class Listing:
    def __init__(self, functions: FunctionsApi, versions: VersionsApi) -> None:
        self._functions = functions
        self._versions = versions

    async def functions(
        self, who: Principal, page_size: int, page_token: str, tag_filter: Mapping[str, str]
    ) -> Page[FunctionRecord]:
        records = sorted(await self._functions.list(who), key=lambda r: r.name)
        if tag_filter:
            records = [r for r in records if matches(r.config.tags, tag_filter)]
        scope = scope_of(
            "functions", who.namespace, *sorted(f"{k}={v}" for k, v in tag_filter.items())
        )
        return page(records, lambda r: r.name, page_size, page_token, scope)

    async def versions(
        self, who: Principal, name: str, page_size: int, page_token: str
    ) -> Page[VersionRecord]:
        validation.check_name(name)
        records = sorted(await self._versions.list(who, name), key=lambda v: version_key(v.version))
        scope = scope_of("versions", who.namespace, name)
        return page(records, lambda v: version_key(v.version), page_size, page_token, scope)
