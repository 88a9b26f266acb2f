"""A real MCP server (MCP Python SDK) for tests/legacy_sse.rs.

Serves either the legacy HTTP+SSE transport (`--transport sse`: GET /sse, POST /messages/)
or Streamable HTTP (`--transport streamable`: /mcp; `--json` for JSON answers instead of
event streams). Prints `LISTENING <port>` once it
accepts connections, then `REQ <METHOD> <path> <mcp-session-id or ->` for every HTTP request
it receives, so a test can see what reached it (e.g. the DELETE that ends a session).

Tools: `whoami` (this server's name), `echo(text)`, `tick(n)` (sends n log notifications
while it runs, then returns "ticked n").
"""

import argparse
import warnings
import asyncio
import socket
import sys

import uvicorn
from mcp.server.mcpserver import Context, MCPServer


def main() -> None:
    warnings.filterwarnings("ignore")
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--transport", choices=["sse", "streamable"], required=True)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    server = MCPServer(args.name)

    @server.tool()
    def whoami() -> str:
        """This server's name."""
        return args.name

    @server.tool()
    def echo(text: str) -> str:
        """Sends the text back."""
        return text

    @server.tool()
    async def tick(n: int, ctx: Context) -> str:
        """Sends n log notifications while it runs."""
        for i in range(n):
            await ctx.info(f"tick {i}")
            await asyncio.sleep(0.02)
        return f"ticked {n}"

    if args.transport == "sse":
        app = server.sse_app()
    else:
        app = server.streamable_http_app(json_response=args.json)

    async def logged(scope, receive, send):
        if scope["type"] == "http":
            session = "-"
            for name, value in scope.get("headers", []):
                if name.lower() == b"mcp-session-id":
                    session = value.decode("latin-1")
            print(f"REQ {scope['method']} {scope['path']} {session}", flush=True)
        await app(scope, receive, send)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    config = uvicorn.Config(logged, log_level="warning", lifespan="on")
    uv = uvicorn.Server(config)

    async def serve() -> None:
        task = asyncio.create_task(uv.serve(sockets=[sock]))
        while not uv.started:
            if task.done():
                task.result()
                return
            await asyncio.sleep(0.01)
        print(f"LISTENING {sock.getsockname()[1]}", flush=True)
        await task

    asyncio.run(serve())
    sys.exit(0)


if __name__ == "__main__":
    main()
