"""An MCP client from the official Python SDK (2.3.0) with the SDK's OAuth support
(`OAuthClientProvider` on an httpx2 client, the Streamable HTTP transport), given only the
MCP URL: on the 401 it discovers the protected resource metadata and the authorization
server, registers itself, authorizes (no browser: the redirect handler fetches the
authorization URL and takes `code`, `state` and `iss` from the redirect's `Location`), gets a
token, then lists tools and calls `echo`. Prints one JSON line: what the tools answered, the
token's claims (unverified), and every HTTP exchange the client made, in order.

usage: oauth_client.py MCP_URL [TEXT]
"""
import asyncio
import json
import sys
from urllib.parse import parse_qs, urlparse

import httpx2
import jwt
from mcp.client.auth import OAuthClientProvider
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

REDIRECT_URI = "http://127.0.0.1:1/callback"


class MemoryStorage:
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


async def main() -> None:
    url = sys.argv[1]
    text = sys.argv[2] if len(sys.argv) > 2 else "hello through oauth"
    exchanges: list[list] = []
    redirect: dict[str, str | None] = {}

    async def record(response: httpx2.Response) -> None:
        request = response.request
        exchanges.append([
            request.method,
            str(request.url),
            response.status_code,
            "authorization" in request.headers,
        ])

    async def redirect_handler(authorization_url: str) -> None:
        # The user agent's part, approved at once: follow nothing, read the redirect.
        async with httpx2.AsyncClient(event_hooks={"response": [record]}) as browser:
            response = await browser.get(authorization_url)
        if response.status_code not in (302, 303):
            raise RuntimeError(f"authorize answered {response.status_code}: {response.text}")
        location = response.headers["location"]
        if not location.startswith(REDIRECT_URI):
            raise RuntimeError(f"redirected elsewhere: {location}")
        query = parse_qs(urlparse(location).query)
        redirect.update({k: v[0] for k, v in query.items()})
        redirect["authorization_url"] = authorization_url

    async def callback_handler() -> AuthorizationCodeResult:
        return AuthorizationCodeResult(
            code=redirect["code"], state=redirect.get("state"), iss=redirect.get("iss")
        )

    storage = MemoryStorage()
    provider = OAuthClientProvider(
        server_url=url,
        client_metadata=OAuthClientMetadata(
            client_name="mcp-gateway oauth e2e",
            redirect_uris=[REDIRECT_URI],
            grant_types=["authorization_code"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=redirect_handler,
        callback_handler=callback_handler,
    )
    http = httpx2.AsyncClient(auth=provider, event_hooks={"response": [record]})
    async with http:
        async with Client(streamable_http_client(url, http_client=http)) as client:
            tools = await client.list_tools()
            result = await client.call_tool("echo", {"text": text})
            protocol = client.protocol_version
    access = storage.tokens.access_token if storage.tokens else None
    claims = jwt.decode(access, options={"verify_signature": False}) if access else None
    authorization_url = urlparse(str(redirect.get("authorization_url", "")))
    print(json.dumps({
        "protocol": protocol,
        "tools": sorted(t.name for t in tools.tools),
        "echo": result.content[0].text,
        "is_error": bool(result.is_error),
        "claims": claims,
        "client_id": storage.client_info.client_id if storage.client_info else None,
        "authorize_params": {k: v[0] for k, v in parse_qs(authorization_url.query).items()},
        "resource_metadata": provider.context.protected_resource_metadata.model_dump(mode="json")
        if provider.context.protected_resource_metadata
        else None,
        "exchanges": exchanges,
    }), flush=True)


asyncio.run(main())
