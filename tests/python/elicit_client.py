"""A 2026-07-28 client from the official Python SDK calling `greet` of elicit_server.py: the
SDK fulfils the input-required result with its elicitation callback and retries. Prints one
JSON line with the result and the questions it was asked.

usage: elicit_client.py URL
"""
import asyncio
import json
import sys

import mcp_types as types
from mcp.client.client import Client

asked = []


async def on_elicit(context, params):
    asked.append(params.message)
    return types.ElicitResult(action="accept", content={"name": "Ada"})


async def main() -> None:
    async with Client(sys.argv[1], elicitation_callback=on_elicit) as client:
        result = await client.call_tool("greet", {})
        print(json.dumps({
            "protocol": client.protocol_version,
            "result": result.content[0].text,
            "asked": asked,
        }), flush=True)


asyncio.run(main())
