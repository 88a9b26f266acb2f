"""A Streamable HTTP MCP server from the official Python SDK for the stream tests: an event
store (ids of this server's own making, so a test can tell they pass through untouched), a
slow `steps` tool that reports progress and records whether it finished or was cancelled, and
a `subscriptions/listen` bus with an `announce` tool. `record` tells what happened so far.
Serves the session (2025-11-25) and the stateless (2026-07-28) revisions. Prints `READY <port>`.

usage: streams_server.py NAME
"""
import asyncio
import socket
import sys
from itertools import count

import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.streamable_http import EventMessage, EventStore
from mcp.server.subscriptions import InMemorySubscriptionBus

name = sys.argv[1]
bus = InMemorySubscriptionBus()
server = MCPServer(name, subscriptions=bus)
seen = {"started": [], "finished": [], "cancelled": [], "replays": []}


class MemoryEventStore(EventStore):
    """Every event in memory, ids `NAME-ev-N`."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, object]] = []
        self.ids = count(1)

    async def store_event(self, stream_id, message):
        event_id = f"{name}-ev-{next(self.ids)}"
        self.events.append((event_id, stream_id, message))
        return event_id

    async def replay_events_after(self, last_event_id, send_callback):
        seen["replays"].append(last_event_id)
        stream = next((s for e, s, _ in self.events if e == last_event_id), None)
        if stream is None:
            return None
        after = False
        for event_id, stream_id, message in self.events:
            if after and stream_id == stream and message is not None:
                await send_callback(EventMessage(message, event_id))
            after = after or event_id == last_event_id
        return stream


@server.tool()
def whoami() -> str:
    return name


@server.tool()
async def steps(tag: str, n: int, pause: float, ctx: Context) -> str:
    """Reports progress `step 1..n`, `pause` seconds apart; records how it ended under `tag`."""
    seen["started"].append(tag)
    try:
        for i in range(1, n + 1):
            await ctx.report_progress(i, n, f"step {i}")
            await asyncio.sleep(pause)
    except asyncio.CancelledError:
        seen["cancelled"].append(tag)
        raise
    seen["finished"].append(tag)
    return f"{name} did {n} steps"


@server.tool()
def record() -> dict:
    return {**seen, "listeners": len(bus._listeners)}


@server.tool()
async def announce(ctx: Context) -> str:
    await ctx.notify_tools_changed()
    return "announced"


async def main() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    app = server.streamable_http_app(event_store=MemoryEventStore())
    config = uvicorn.Config(app, log_level="warning")
    print(f"READY {port}", flush=True)
    await uvicorn.Server(config).serve(sockets=[sock])


asyncio.run(main())
