"""A Streamable HTTP MCP server from the official Python SDK, whichever release runs it:
2.3.0 speaks 2026-07-28 and the earlier revisions; 1.27.0 predates the stateless revision
(sessions via `initialize` only). Prints `READY <port>` once it listens.

usage: modern_server.py NAME
"""
import asyncio
import socket
import sys

import uvicorn
from starlette.requests import Request
from starlette.responses import JSONResponse
try:
    from mcp.server.mcpserver import MCPServer as Server  # 2.x
except ImportError:
    from mcp.server.fastmcp import FastMCP as Server  # 1.x

name = sys.argv[1]
server = Server(name)


@server.custom_route("/health", methods=["GET"])
async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


@server.tool()
def whoami() -> str:
    """The name of the server that answered."""
    return name


@server.tool()
def echo(text: str) -> str:
    return text


@server.tool()
def drop_table(table: str) -> str:
    return f"dropped {table}"


async def main() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    app = server.streamable_http_app()
    config = uvicorn.Config(app, log_level="warning")
    print(f"READY {port}", flush=True)
    await uvicorn.Server(config).serve(sockets=[sock])


asyncio.run(main())
