"""A Streamable HTTP client from the official Python SDK (2.3.0), in `legacy` mode (the
initialize handshake), for tests/legacy_sse_reverse.rs: through `/mcp/{id}` of a server
that only speaks the legacy HTTP+SSE transport. Lists tools, calls `echo`, `whoami` and
`tick(3)` (collecting the log notifications sent during the call), then leaves (the SDK
ends its session with DELETE). Prints one JSON line with what it saw.

usage: reverse_client.py URL
"""
import asyncio
import json
import sys

from mcp.client.client import Client


async def main() -> None:
    url = sys.argv[1]
    logs = []

    async def on_log(params) -> None:
        logs.append(str(params.data))

    async with Client(url, mode="legacy", logging_callback=on_log) as client:
        tools = await client.list_tools()
        echo = await client.call_tool("echo", {"text": "hello through the gateway"})
        who = await client.call_tool("whoami", {})
        tick = await client.call_tool("tick", {"n": 3})
        print(json.dumps({
            "protocol": client.protocol_version,
            "tools": sorted(t.name for t in tools.tools),
            "echo": echo.content[0].text,
            "whoami": who.content[0].text,
            "tick": tick.content[0].text,
            "logs": logs,
        }), flush=True)


asyncio.run(main())
