//! A stdio MCP server built on the official Rust SDK (`rmcp`), used by `tests/stdio.rs` as
//! the program behind a `transport: "stdio"` upstream. Newline-delimited JSON-RPC on
//! stdin/stdout; one line on stderr at start (the gateway logs it).
//!
//! Tools: `echo` (text back), `slow_count` (n progress notifications 100 ms apart, then a
//! result), `whoami` (this process's pid, working directory and `STDIO_TEST_VALUE`), and
//! `sleep` (returns after ms milliseconds, for requests in flight when the process dies or
//! the client leaves; says on stderr when it starts and when `notifications/cancelled`
//! stops it),
//! `announce` (returns at once, then sends `notifications/tools/list_changed` 200 ms later,
//! when no request is in flight: it can only reach the client on its GET stream).
//!
//! Run: `cargo run --example stdio_mcp_server` and type JSON-RPC lines.

use rmcp::{
    handler::server::{router::tool::ToolRouter, wrapper::Parameters},
    model::{
        Implementation, ProgressNotificationParam, RequestMetaObject, ServerCapabilities,
        ServerConfig,
    },
    service::RequestContext,
    tool, tool_handler, tool_router, Peer, RoleServer, ServerHandler, ServiceExt,
};
use std::time::Duration;

#[derive(Debug, serde::Deserialize, rmcp::schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
struct EchoArgs {
    /// The text to send back.
    text: String,
}

#[derive(Debug, serde::Deserialize, rmcp::schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
struct CountArgs {
    /// How many progress notifications to send, 100 ms apart.
    n: u32,
}

#[derive(Debug, serde::Deserialize, rmcp::schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
struct SleepArgs {
    /// How long to take, in milliseconds.
    ms: u64,
}

#[derive(Clone)]
struct StdioTestServer {
    #[allow(dead_code)] // read by the code `#[tool_handler]` generates
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl StdioTestServer {
    fn new() -> Self {
        StdioTestServer {
            tool_router: Self::tool_router(),
        }
    }

    #[tool(description = "Return the text unchanged")]
    async fn echo(&self, Parameters(EchoArgs { text }): Parameters<EchoArgs>) -> String {
        text
    }

    #[tool(description = "This process: pid, working directory, STDIO_TEST_VALUE")]
    async fn whoami(&self) -> String {
        serde_json::json!({
            "pid": std::process::id(),
            "cwd": std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default(),
            "value": std::env::var("STDIO_TEST_VALUE").ok(),
        })
        .to_string()
    }

    #[tool(description = "Answer after ms milliseconds, or at once when cancelled")]
    async fn sleep(
        &self,
        Parameters(SleepArgs { ms }): Parameters<SleepArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> String {
        // Both lines reach the gateway's log (stderr), where tests look for them.
        eprintln!("sleep of {ms} ms started");
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(ms)) => format!("slept {ms} ms"),
            _ = ctx.ct.cancelled() => {
                eprintln!("sleep of {ms} ms cancelled");
                "cancelled".to_string()
            }
        }
    }

    #[tool(description = "Return, then send notifications/tools/list_changed 200 ms later")]
    async fn announce(&self, peer: Peer<RoleServer>) -> String {
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let _ = peer.notify_tool_list_changed().await;
        });
        "announcing".to_string()
    }

    #[tool(description = "Send n progress notifications 100 ms apart, then return")]
    async fn slow_count(
        &self,
        Parameters(CountArgs { n }): Parameters<CountArgs>,
        meta: RequestMetaObject,
        peer: Peer<RoleServer>,
    ) -> Result<String, rmcp::ErrorData> {
        let token = meta.get_progress_token().ok_or_else(|| {
            rmcp::ErrorData::invalid_params("slow_count needs a progress token", None)
        })?;
        for i in 1..=n {
            peer.notify_progress(
                ProgressNotificationParam::new(token.clone(), f64::from(i))
                    .with_total(f64::from(n)),
            )
            .await
            .map_err(|e| rmcp::ErrorData::internal_error(format!("notify_progress: {e}"), None))?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(format!("counted to {n}"))
    }
}

#[tool_handler]
impl ServerHandler for StdioTestServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .build(),
        )
        .with_server_info(Implementation::new("stdio-test-server", "0.1.0"))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    eprintln!("stdio-test-server {} starting", std::process::id());
    let service = StdioTestServer::new()
        .serve(rmcp::transport::stdio())
        .await?;
    service.waiting().await?;
    eprintln!("stdio-test-server {} done", std::process::id());
    Ok(())
}
