"""A Streamable HTTP MCP server from an MCP Python SDK release that predates the stateless
revision (1.27.0: 2025-11-25 and earlier, sessions via `initialize`). Prints `READY <port>`.

usage: legacy_server.py NAME
"""
import asyncio
import socket
import sys

import uvicorn
from starlette.requests import Request
from starlette.responses import JSONResponse
from mcp.server.fastmcp import FastMCP

name = sys.argv[1]
server = FastMCP(name)


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
