"""A Streamable HTTP MCP server from the official Python SDK with an event store, so its
streams can be resumed with `Last-Event-ID`. Its `interrupted` tool closes its own SSE stream
half way (the SDK's `close_sse_stream`, as a server polling a long task does); the client must
reconnect with `Last-Event-ID` to get the rest. Prints `READY <port>`.

usage: resumable_server.py NAME
"""
import asyncio
import socket
import sys
from itertools import count

import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.streamable_http import EventMessage, EventStore

name = sys.argv[1]
server = MCPServer(name)


class MemoryEventStore(EventStore):
    """Every event in memory, with ids of this server's own making."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, object]] = []
        self.ids = count(1)
        self.replays: list[str] = []

    async def store_event(self, stream_id, message):
        event_id = f"{name}-ev-{next(self.ids)}"
        self.events.append((event_id, stream_id, message))
        return event_id

    async def replay_events_after(self, last_event_id, send_callback):
        self.replays.append(last_event_id)
        stream = next((s for e, s, _ in self.events if e == last_event_id), None)
        if stream is None:
            return None
        after = False
        for event_id, stream_id, message in self.events:
            if after and stream_id == stream and message is not None:
                await send_callback(EventMessage(message, event_id))
            after = after or event_id == last_event_id
        return stream


store = MemoryEventStore()


@server.tool()
def whoami() -> str:
    return name


@server.tool()
def replays() -> list[str]:
    """The `Last-Event-ID`s this server was asked to resume after."""
    return store.replays


@server.tool()
async def interrupted(ctx: Context) -> str:
    await ctx.report_progress(1, 2, "before the break")
    await ctx.close_sse_stream()
    await asyncio.sleep(0.3)
    await ctx.report_progress(2, 2, "after the break")
    return f"finished on {name}"


async def main() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    app = server.streamable_http_app(event_store=store, retry_interval=100)
    config = uvicorn.Config(app, log_level="warning")
    print(f"READY {port}", flush=True)
    await uvicorn.Server(config).serve(sockets=[sock])


asyncio.run(main())
