"""A client from the official Python SDK (2.3.0) in its default `auto` mode: it probes
`server/discover` and speaks the stateless 2026-07-28 revision when the server does, else
falls back to `initialize`. Prints one JSON line with what it saw.

usage: modern_client.py URL [CALLS] [MODE]   (MODE: auto, the default, or legacy)
"""
import asyncio
import json
import sys

from mcp.client.client import Client


async def main() -> None:
    url = sys.argv[1]
    calls = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    mode = sys.argv[3] if len(sys.argv) > 3 else "auto"
    async with Client(url, mode=mode) as client:
        tools = await client.list_tools()
        answers = []
        for i in range(calls):
            result = await client.call_tool("echo", {"text": f"hello {i}"})
            answers.append(result.content[0].text)
        who = await client.call_tool("whoami", {})
        print(json.dumps({
            "protocol": client.protocol_version,
            "tools": sorted(t.name for t in tools.tools),
            "echo": answers,
            "whoami": who.content[0].text,
        }), flush=True)


asyncio.run(main())
