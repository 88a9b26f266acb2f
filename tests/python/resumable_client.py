"""A session-based client from the official Python SDK calling the `interrupted` tool of
resumable_server.py: the server cuts the call's stream, the SDK reconnects with
`Last-Event-ID` and receives the rest. Prints one JSON line with what it saw.

usage: resumable_client.py URL
"""
import asyncio
import json
import sys

from mcp.client.client import Client


async def main() -> None:
    progress = []

    async def on_progress(value, total, message):
        progress.append(message)

    async with Client(sys.argv[1], mode="legacy") as client:
        who = (await client.call_tool("whoami", {})).content[0].text
        result = await client.call_tool("interrupted", {}, progress_callback=on_progress)
        replays = (await client.call_tool("replays", {})).structured_content
        print(json.dumps({
            "whoami": who,
            "result": result.content[0].text,
            "progress": progress,
            "replays": replays,
        }), flush=True)


asyncio.run(main())
