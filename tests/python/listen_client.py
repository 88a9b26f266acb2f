"""A 2026-07-28 client from the official Python SDK: opens a `subscriptions/listen` stream,
stays silent for SILENCE seconds, has the server announce a change, waits for the event,
closes the stream, then watches the server drop its listener. Prints one JSON line.

usage: listen_client.py URL SILENCE
"""
import asyncio
import json
import sys
import time

from mcp.client.client import Client


async def listeners(client: Client) -> int:
    return int((await client.call_tool("listeners", {})).content[0].text)


async def main() -> None:
    url, silence = sys.argv[1], float(sys.argv[2])
    async with Client(url) as client:
        async with client.listen(tools_list_changed=True) as sub:
            during = await listeners(client)
            await asyncio.sleep(silence)
            await client.call_tool("announce", {})
            event = await asyncio.wait_for(sub.__anext__(), 10)
        closed_at = time.monotonic()
        after = during
        while after > 0 and time.monotonic() - closed_at < 10:
            await asyncio.sleep(0.05)
            after = await listeners(client)
        print(json.dumps({
            "protocol": client.protocol_version,
            "event": type(event).__name__,
            "listeners_during": during,
            "listeners_after": after,
            "released_in_s": round(time.monotonic() - closed_at, 2),
        }), flush=True)


asyncio.run(main())
