"""A real legacy HTTP+SSE MCP client (MCP Python SDK `sse_client`) for tests/legacy_sse.rs.

Usage: client.py URL [WHOAMI_CALLS]. Connects to URL (the gateway's /sse/{id}), initializes,
lists tools, calls `whoami` WHOAMI_CALLS times (default 3), `echo` once and `tick` once,
printing one JSON object per line for the test to check, then `{"event": "done"}`.
"""

import asyncio
import json
import sys

from mcp.client.session import ClientSession
from mcp.client.sse import sse_client


def out(obj) -> None:
    print(json.dumps(obj), flush=True)


def text_of(result) -> str:
    return "".join(getattr(c, "text", "") for c in result.content)


async def run(url: str, calls: int) -> None:
    logs = []

    async def on_log(params) -> None:
        logs.append(str(params.data))

    async with sse_client(url, timeout=30, sse_read_timeout=120) as (read, write):
        async with ClientSession(read, write, logging_callback=on_log) as session:
            init = await session.initialize()
            out({"event": "initialized", "server": init.server_info.name, "protocol": init.protocol_version})
            tools = await session.list_tools()
            out({"event": "tools", "names": sorted(t.name for t in tools.tools)})
            for _ in range(calls):
                r = await session.call_tool("whoami", {})
                out({"event": "whoami", "text": text_of(r)})
            r = await session.call_tool("echo", {"text": "hello through the gateway"})
            out({"event": "echo", "text": text_of(r), "error": bool(r.is_error)})
            r = await session.call_tool("tick", {"n": 3})
            out({"event": "tick", "text": text_of(r), "logs": logs})
    out({"event": "done"})


if __name__ == "__main__":
    asyncio.run(asyncio.wait_for(run(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 3), 90))
