"""A small OAuth 2.1 authorization server for the end-to-end OAuth test: RFC 8414 metadata,
dynamic client registration (RFC 7591), an authorization endpoint that approves at once
(redirects to the client's redirect_uri with code, state and the RFC 9207 `iss`), and a
token endpoint for the authorization_code grant with PKCE (S256) that issues RS256 JWT
access tokens whose `aud` is the RFC 8707 `resource` the client sent.

Before it prints `READY <port>` it writes its JWKS (one RSA key with a `kid`) to JWKS_PATH,
so a resource server can read the issuer's keys from that file. Its issuer is
`http://127.0.0.1:<port>`.

Test-only endpoints: `GET /seen` (what the endpoints received: the `resource` parameters,
registrations, tokens issued) and `GET /mint?aud=...&sub=...&scope=...` (a token signed with
the same key for any audience, without a flow).

usage: oauth_server.py JWKS_PATH
"""
import asyncio
import base64
import hashlib
import json
import secrets
import socket
import sys
import time
from urllib.parse import urlencode

import jwt
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import Route

KID = "test-as-1"
TOKEN_LIFETIME = 600

key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
issuer = ""  # set once the port is known

clients: dict[str, dict] = {}
codes: dict[str, dict] = {}
seen: dict[str, list] = {
    "authorize_resources": [],
    "token_resources": [],
    "registrations": [],
    "tokens": [],
}


def oauth_error(error: str, description: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


def mint(aud: str, sub: str, scope: str, client_id: str | None = None) -> str:
    now = int(time.time())
    claims = {
        "iss": issuer,
        "sub": sub,
        "aud": aud,
        "iat": now,
        "exp": now + TOKEN_LIFETIME,
        "scope": scope,
    }
    if client_id:
        claims["client_id"] = client_id
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": KID})


async def metadata(request: Request) -> JSONResponse:
    return JSONResponse({
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "registration_endpoint": f"{issuer}/register",
        "jwks_uri": f"{issuer}/jwks",
        "scopes_supported": ["mcp:tools"],
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code"],
        "token_endpoint_auth_methods_supported": ["none"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": True,
    })


async def jwks(request: Request) -> JSONResponse:
    return JSONResponse(jwks_document())


def jwks_document() -> dict:
    public = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    public.update({"kid": KID, "use": "sig", "alg": "RS256"})
    return {"keys": [public]}


async def register(request: Request) -> JSONResponse:
    body = await request.json()
    redirect_uris = body.get("redirect_uris") or []
    if not redirect_uris:
        return oauth_error("invalid_redirect_uri", "redirect_uris required")
    client_id = "client-" + secrets.token_hex(8)
    record = {
        "client_id": client_id,
        "client_id_issued_at": int(time.time()),
        "redirect_uris": redirect_uris,
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
    }
    if body.get("client_name"):
        record["client_name"] = body["client_name"]
    if body.get("scope"):
        record["scope"] = body["scope"]
    clients[client_id] = record
    seen["registrations"].append(client_id)
    return JSONResponse(record, status_code=201)


async def authorize(request: Request):
    q = request.query_params
    client = clients.get(q.get("client_id", ""))
    if client is None:
        return oauth_error("invalid_client", "unknown client_id")
    redirect_uri = q.get("redirect_uri", "")
    if redirect_uri not in client["redirect_uris"]:
        return oauth_error("invalid_request", "redirect_uri not registered")
    if q.get("response_type") != "code":
        return oauth_error("unsupported_response_type", "only code")
    if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
        return oauth_error("invalid_request", "PKCE with S256 required")
    resource = q.get("resource")
    seen["authorize_resources"].append(resource)
    code = secrets.token_urlsafe(24)
    codes[code] = {
        "client_id": client["client_id"],
        "redirect_uri": redirect_uri,
        "challenge": q["code_challenge"],
        "resource": resource,
        "scope": q.get("scope") or "mcp:tools",
        "expires": time.time() + 60,
    }
    params = {"code": code, "iss": issuer}
    if q.get("state") is not None:
        params["state"] = q["state"]
    sep = "&" if "?" in redirect_uri else "?"
    return RedirectResponse(f"{redirect_uri}{sep}{urlencode(params)}", status_code=302)


async def token(request: Request) -> JSONResponse:
    form = await request.form()
    if form.get("grant_type") != "authorization_code":
        return oauth_error("unsupported_grant_type", "only authorization_code")
    grant = codes.pop(str(form.get("code", "")), None)
    if grant is None or grant["expires"] < time.time():
        return oauth_error("invalid_grant", "unknown or expired code")
    if form.get("client_id") != grant["client_id"]:
        return oauth_error("invalid_grant", "code issued to another client")
    if form.get("redirect_uri") != grant["redirect_uri"]:
        return oauth_error("invalid_grant", "redirect_uri differs")
    verifier = str(form.get("code_verifier", ""))
    digest = hashlib.sha256(verifier.encode()).digest()
    if base64.urlsafe_b64encode(digest).decode().rstrip("=") != grant["challenge"]:
        return oauth_error("invalid_grant", "PKCE verification failed")
    resource = form.get("resource")
    seen["token_resources"].append(resource)
    if not resource:
        return oauth_error("invalid_target", "resource required (RFC 8707)")
    if grant["resource"] is not None and resource != grant["resource"]:
        return oauth_error("invalid_target", "resource differs from the authorization request")
    access = mint(str(resource), "alice", grant["scope"], grant["client_id"])
    seen["tokens"].append({"aud": resource, "client_id": grant["client_id"]})
    return JSONResponse(
        {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME,
            "scope": grant["scope"],
        },
        headers={"Cache-Control": "no-store"},
    )


async def seen_page(request: Request) -> JSONResponse:
    return JSONResponse(seen)


async def mint_page(request: Request) -> JSONResponse:
    q = request.query_params
    return JSONResponse({
        "access_token": mint(q["aud"], q.get("sub", "mallory"), q.get("scope", "mcp:tools")),
    })


app = Starlette(routes=[
    Route("/.well-known/oauth-authorization-server", metadata),
    Route("/jwks", jwks),
    Route("/register", register, methods=["POST"]),
    Route("/authorize", authorize),
    Route("/token", token, methods=["POST"]),
    Route("/seen", seen_page),
    Route("/mint", mint_page),
])


async def main() -> None:
    global issuer
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    issuer = f"http://127.0.0.1:{port}"
    with open(sys.argv[1], "w") as f:
        json.dump(jwks_document(), f)
    config = uvicorn.Config(app, log_level="warning")
    print(f"READY {port}", flush=True)
    await uvicorn.Server(config).serve(sockets=[sock])


asyncio.run(main())
