"""FetchCode from funcmgr as a codecache.CodeSource."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from nimbus.common.errors import from_rpc_error
from nimbus.internal.v1 import funcmgr_pb2, funcmgr_pb2_grpc


class FuncmgrCodeSource:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = funcmgr_pb2_grpc.FunctionManagerStub(channel)

    async def fetch(self, sha256: str) -> AsyncIterator[bytes]:
        # The caller bounds the whole download with asyncio.timeout; cancelling ends the stream.
        call = self._stub.FetchCode(funcmgr_pb2.FetchCodeRequest(code_sha256=sha256))
        try:
            async for chunk in call:
                yield chunk.data
        except grpc.aio.AioRpcError as err:
            raise from_rpc_error(err) from err
        finally:
            call.cancel()
