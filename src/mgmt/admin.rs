//! The admin API on the management port, for `sessions.store: "redis"`:
//! `GET /admin/sessions` lists the recorded sessions (with their remaining lifetime) and
//! `DELETE /admin/sessions/{id}` revokes one: its record goes, every shard of this process
//! refuses it from its next tick, other gateway processes within a few seconds (their shards
//! re-check the store).
//!
//! Owns: the admin routes, their authorization (`sessions.adminToken` as a bearer token;
//! without one, loopback clients of a loopback-only port) and their Redis exchanges (one connection, on the
//! management shard). Must not: run on a data shard, or block.

use std::time::Duration;

use mcp_gateway_config::GatewayConfig;
use mcp_gateway_shard::http::encode;
use mcp_gateway_shard::messages::ShardCommand;
use mcp_gateway_shard::store::redis::{as_int, as_text};
use mcp_gateway_shard::store::{record_key, RedisConn, SessionKey, StoreError, KEY_PREFIX};
use serde_json::{json, Value};

const TIMEOUT: Duration = Duration::from_secs(2);
/// The most sessions one listing returns (`?limit=` lowers it).
const MAX_LISTED: usize = 10_000;

/// What the admin API needs from a request.
pub struct AdminRequest {
    pub method: String,
    /// Path and query.
    pub target: String,
    pub authorization: Option<String>,
    pub peer_is_loopback: bool,
    /// The management port listens on a loopback address only.
    pub listener_is_loopback: bool,
    /// `Host` names this machine and any `Origin` is a local page: not a web page that
    /// rebound its own name to 127.0.0.1 (which would otherwise pass as loopback).
    pub local_browser_context: bool,
    /// With authentication on: the request authenticated as a principal with the `admin`
    /// role (checked when the head was read).
    pub admin_principal: bool,
}

/// Answers an `/admin/...` request: status and JSON body.
pub async fn answer(
    config: &GatewayConfig,
    shards: &[crossbeam_channel::Sender<ShardCommand>],
    req: AdminRequest,
) -> (u16, Vec<u8>) {
    if let Err(denied) = authorize(config, &req) {
        return denied;
    }
    let Some(store) = &config.sessions.redis else {
        return error(404, "the admin API needs sessions.store \"redis\"");
    };
    let (path, query) = req.target.split_once('?').unwrap_or((&req.target, ""));
    let result = match (req.method.as_str(), path.strip_prefix("/admin/sessions")) {
        ("GET", Some("" | "/")) => list(store, limit(query)).await,
        ("DELETE", Some(rest)) if rest.len() == 17 && rest.starts_with('/') => {
            revoke(store, shards, &rest[1..]).await
        }
        (_, Some(_)) => {
            return error(
                405,
                "use GET /admin/sessions or DELETE /admin/sessions/{id}",
            )
        }
        _ => return error(404, "no such admin route"),
    };
    match result {
        Ok(answer) => answer,
        Err(e) => {
            tracing::warn!(error = %e, "admin API: session store failed");
            error(502, &format!("session store: {e}"))
        }
    }
}

pub fn authorize(config: &GatewayConfig, req: &AdminRequest) -> Result<(), (u16, Vec<u8>)> {
    if req.admin_principal {
        return Ok(());
    }
    match &config.sessions.admin_token {
        Some(token) => {
            let sent = req
                .authorization
                .as_deref()
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim);
            if sent.is_some_and(|s| constant_time_eq(s.as_bytes(), token.as_bytes())) {
                Ok(())
            } else {
                Err(error(
                    401,
                    "a valid `Authorization: Bearer <sessions.adminToken>` is required",
                ))
            }
        }
        // A loopback peer of a port open to the network may be a same-host reverse proxy
        // relaying anyone: without a token, only a loopback-only port trusts loopback.
        None if req.peer_is_loopback
            && req.listener_is_loopback
            && req.local_browser_context =>
        {
            Ok(())
        }
        None if req.peer_is_loopback && req.listener_is_loopback => Err(error(
            403,
            "without sessions.adminToken the admin API answers requests naming localhost only (Host, Origin)",
        )),
        None if req.peer_is_loopback => Err(error(
            403,
            "the management port is not loopback-only: the admin API needs sessions.adminToken / ADMIN_TOKEN",
        )),
        None => Err(error(
            403,
            "without sessions.adminToken / ADMIN_TOKEN the admin API answers loopback clients only",
        )),
    }
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn limit(query: &str) -> usize {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("limit="))
        .and_then(|v| v.parse().ok())
        .map_or(MAX_LISTED, |n: usize| n.min(MAX_LISTED))
}

async fn list(
    store: &mcp_gateway_config::RedisStore,
    limit: usize,
) -> Result<(u16, Vec<u8>), StoreError> {
    let mut conn = RedisConn::connect(store, TIMEOUT).await?;
    let mut cursor = "0".to_string();
    let mut keys = Vec::new();
    loop {
        let page = conn
            .call(
                redis::cmd("SCAN")
                    .arg(&cursor)
                    .arg("MATCH")
                    .arg(format!("{KEY_PREFIX}*"))
                    .arg("COUNT")
                    .arg(1000),
            )
            .await?;
        let redis::Value::Array(parts) = page else {
            return Err(StoreError::Protocol(format!("SCAN answered {page:?}")));
        };
        let [next, found] = parts.as_slice() else {
            return Err(StoreError::Protocol("SCAN answered a wrong shape".into()));
        };
        cursor = as_text(next)?.unwrap_or_default();
        if let redis::Value::Array(found) = found {
            for key in found {
                keys.extend(as_text(key)?);
            }
        }
        if cursor == "0" || keys.len() >= limit {
            break;
        }
    }
    keys.truncate(limit);
    let mut sessions = Vec::with_capacity(keys.len());
    for key in keys {
        let Some(record) = as_text(&conn.call(redis::cmd("GET").arg(&key)).await?)? else {
            continue; // expired between SCAN and GET
        };
        let ttl_ms = as_int(&conn.call(redis::cmd("PTTL").arg(&key)).await?)?;
        let mut session: Value = serde_json::from_str(&record).unwrap_or(json!({}));
        session["id"] = json!(key.trim_start_matches(KEY_PREFIX));
        session["expiresInMs"] = json!(ttl_ms.max(0));
        sessions.push(session);
    }
    let body = json!({"total": sessions.len(), "sessions": sessions});
    Ok((200, body.to_string().into_bytes()))
}

async fn revoke(
    store: &mcp_gateway_config::RedisStore,
    shards: &[crossbeam_channel::Sender<ShardCommand>],
    id: &str,
) -> Result<(u16, Vec<u8>), StoreError> {
    let Ok(key) = SessionKey::try_from(id.as_bytes()) else {
        return Ok(error(400, "a session id is 16 characters"));
    };
    let mut conn = RedisConn::connect(store, TIMEOUT).await?;
    let removed = as_int(&conn.call(redis::cmd("DEL").arg(record_key(&key))).await?)?;
    if removed == 0 {
        return Ok(error(
            404,
            "no such session (ended, expired or already revoked)",
        ));
    }
    for tx in shards {
        let _ = tx.send(ShardCommand::Revoke(key));
    }
    tracing::info!(session = id, "session revoked through the admin API");
    Ok((200, json!({"revoked": id}).to_string().into_bytes()))
}

fn error(status: u16, message: &str) -> (u16, Vec<u8>) {
    (status, encode::error_body(status, message, b""))
}
