"""A 2026-07-28 MCP server from the official Python SDK whose `subscriptions/listen` stream
stays silent until the `announce` tool publishes a tools list change; `listeners` tells how
many listen streams the server holds open. Prints `READY <port>`.

usage: listen_server.py
"""
import asyncio
import socket

import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.subscriptions import InMemorySubscriptionBus

bus = InMemorySubscriptionBus()
server = MCPServer("listen", subscriptions=bus)


@server.tool()
async def announce(ctx: Context) -> str:
    await ctx.notify_tools_changed()
    return "announced"


@server.tool()
def listeners() -> int:
    return len(bus._listeners)


async def main() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    config = uvicorn.Config(server.streamable_http_app(), log_level="warning")
    print(f"READY {port}", flush=True)
    await uvicorn.Server(config).serve(sockets=[sock])


asyncio.run(main())
