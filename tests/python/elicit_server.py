"""A 2026-07-28 MCP server from the official Python SDK whose `greet` tool needs the user's
name: on 2026-07-28 the SDK answers the first call with an input-required result (an
elicitation request plus opaque state) and finishes when the client retries with the answer.
`rounds` counts the `greet` calls it served. Prints `READY <port>`.

usage: elicit_server.py
"""
import asyncio
import socket
from typing import Annotated

import uvicorn
from pydantic import BaseModel
from mcp.server.mcpserver import Elicit, MCPServer, Resolve

server = MCPServer("elicit")
calls = 0


class Name(BaseModel):
    name: str


def ask_name() -> Elicit[Name]:
    return Elicit("What is your name?", Name)


@server.tool()
def greet(who: Annotated[Name, Resolve(ask_name)]) -> str:
    global calls
    calls += 1
    return f"hello {who.name}"


async def main() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    config = uvicorn.Config(server.streamable_http_app(), log_level="warning")
    print(f"READY {port}", flush=True)
    await uvicorn.Server(config).serve(sockets=[sock])


asyncio.run(main())
