-- wrk script for bench/run.sh: every request is the same MCP tools/call of the mock
-- fleet's `echo` tool, POSTed to `/` so each proxy spreads it over its default backend.
wrk.method = "POST"
-- MCP_PATH / MCP_SESSION (environment): the gateway's MCP-path runs.
wrk.path = os.getenv("MCP_PATH") or "/"
local session = os.getenv("MCP_SESSION")
if session and session ~= "" then
    wrk.headers["Mcp-Session-Id"] = session
end
-- AUTH_HEADER ("Name: value"): a credential (bench/auth.sh).
local auth = os.getenv("AUTH_HEADER")
if auth and auth ~= "" then
    local name, value = auth:match("^([^:]+):%s*(.*)$")
    if name then
        wrk.headers[name] = value
    end
end
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello"}}}'
