//! `GET/POST /api/upstreams`, `GET/PATCH/DELETE /api/upstreams/{id}`.
//!
//! Adding, changing and removing a server edits the running config's document (as written:
//! environment values stay out of it) and reloads it like a file change; a drain
//! (`PATCH` with `draining`) is the process's own state and is not written to the file.
//!
//! Owns: the server list's JSON shape and its edits. Must not: touch shards but through a
//! reload.

use super::{applied, error, Answer, Call};
use crate::mgmt::reload;
use crate::mgmt::State;
use mcp_gateway_config::{Transport, Upstream};
use serde_json::{json, Value};

/// The keys `PATCH` takes.
const PATCHABLE: [&str; 4] = ["weight", "maxConnections", "timeout", "draining"];

fn describe(state: &State, slot: usize, u: &Upstream) -> Value {
    let (in_flight, open) = state.totals.slot_gauges(slot);
    let health = state.health.entries().get(slot);
    let counters = state
        .totals
        .per_upstream
        .get(slot)
        .copied()
        .unwrap_or_default();
    let lifecycle = if u.retired {
        "removing"
    } else if u.draining {
        "draining"
    } else {
        "active"
    };
    json!({
        "id": u.id,
        "url": u.url,
        "group": u.group,
        "transport": match u.transport {
            Transport::StreamableHttp => "streamable-http",
            Transport::Sse => "sse",
            Transport::Stdio(_) => "stdio",
        },
        "weight": u.weight,
        "maxConnections": u.max_connections,
        "timeout": u.timeout.as_millis() as u64,
        "state": lifecycle,
        "draining": u.draining || u.retired,
        "healthy": health.is_some_and(|h| h.healthy),
        "inFlight": in_flight,
        "connections": open,
        "requests": counters.requests,
        "errors": counters.errors,
    })
}

pub fn list(state: &State) -> Answer {
    let shown = state.shown_slots();
    let servers: Vec<Value> = state
        .config
        .upstreams
        .iter()
        .enumerate()
        .filter(|(slot, _)| shown[*slot])
        .map(|(slot, u)| describe(state, slot, u))
        .collect();
    (
        200,
        json!({"generation": state.reload.generation, "upstreams": servers}),
    )
}

pub fn show(state: &State, id: &str) -> Answer {
    match live_slot(state, id) {
        Some(slot) => (200, describe(state, slot, &state.config.upstreams[slot])),
        None => error(404, "no such upstream server"),
    }
}

fn live_slot(state: &State, id: &str) -> Option<usize> {
    state
        .config
        .upstreams
        .iter()
        .position(|u| u.id == id && !u.retired)
}

/// The document's `upstream.servers` array, created if missing.
fn servers_of(document: &mut Value) -> Option<&mut Vec<Value>> {
    let root = document.as_object_mut()?;
    let upstream = root.entry("upstream").or_insert_with(|| json!({}));
    let servers = upstream
        .as_object_mut()?
        .entry("servers")
        .or_insert_with(|| json!([]));
    servers.as_array_mut()
}

fn position(servers: &[Value], id: &str) -> Option<usize> {
    servers.iter().position(|s| s["id"] == id)
}

/// The running config's document and the position of server `id` in its list (the caller
/// holds the turn); 409 when the list is not one, 404 when `id` is not in it.
fn document_at(call: &Call<'_>, id: &str) -> Result<(Value, usize), Answer> {
    let mut document = call.state.borrow().reload.document.clone();
    let servers = servers_of(&mut document).ok_or_else(not_a_list)?;
    let at =
        position(servers, id).ok_or_else(|| error(404, "no such upstream server in the config"))?;
    Ok((document, at))
}

fn not_a_list() -> Answer {
    error(409, "the running config's upstream.servers is not a list")
}

pub async fn add(call: &Call<'_>, body: &[u8]) -> Answer {
    let server: Value = match serde_json::from_slice(body) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            return error(
                400,
                "the body must be one server object, as in upstream.servers[]",
            )
        }
    };
    let Some(id) = server["id"].as_str().map(str::to_string) else {
        return error(400, "the server needs an \"id\"");
    };
    let _turn = call.turn().await;
    let mut document = call.state.borrow().reload.document.clone();
    let Some(servers) = servers_of(&mut document) else {
        return not_a_list();
    };
    if position(servers, &id).is_some() {
        return error(409, "a server with this id exists; PATCH or DELETE it");
    }
    servers.push(server);
    let (status, body) = call
        .apply(pretty(&document), &format!("POST /api/upstreams ({id})"))
        .await;
    (if status == 200 { 201 } else { status }, body)
}

pub async fn change(call: &Call<'_>, id: &str, body: &[u8]) -> Answer {
    let Ok(Value::Object(patch)) = serde_json::from_slice::<Value>(body) else {
        return error(400, "the body must be a JSON object");
    };
    if let Some(unknown) = patch.keys().find(|k| !PATCHABLE.contains(&k.as_str())) {
        return error(
            400,
            &format!(
                "{unknown:?} cannot be patched; allowed: weight, maxConnections, timeout, draining"
            ),
        );
    }
    let draining = match patch.get("draining") {
        None => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => return error(400, "\"draining\" is true or false"),
    };
    let _turn = call.turn().await;
    let (mut document, at) = match document_at(call, id) {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let settings: Vec<_> = patch
        .iter()
        .filter(|(k, _)| k.as_str() != "draining")
        .collect();
    let mut answer = (200, json!({"id": id}));
    if !settings.is_empty() {
        if let Some(server) = servers_of(&mut document).and_then(|s| s.get_mut(at)) {
            for (k, v) in settings {
                server[k] = v.clone();
            }
        }
        answer = call
            .apply(pretty(&document), &format!("PATCH /api/upstreams/{id}"))
            .await;
        if answer.0 != 200 {
            return answer;
        }
    }
    if let Some(drain) = draining {
        let report = drain_server(call, id, drain);
        tracing::info!(peer = %call.peer, upstream = id, draining = drain, "admin API: drain changed");
        answer.1["draining"] = json!(drain);
        if let Some(report) = report {
            let mut drained = applied(&report);
            drained["shardsOn"] = json!(call.shards_on(report.generation).await);
            answer.1["drain"] = drained;
        }
    }
    answer
}

/// Sets the drain flag and installs a new generation with it; `None` if nothing changed.
fn drain_server(call: &Call<'_>, id: &str, drain: bool) -> Option<reload::Report> {
    let mut s = call.state.borrow_mut();
    if s.reload.layout.is_drained(id) == drain || !s.reload.layout.set_drained(id, drain) {
        return None;
    }
    let mut config = (*s.config).clone();
    config.upstreams.retain(|u| !u.retired);
    let servers = s.reload.layout.arrange(&mut config);
    s.reload.generation += 1;
    reload::install(&mut s, call.shards, config);
    Some(reload::Report {
        generation: s.reload.generation,
        servers,
        sections: Vec::new(),
        needs_restart: Vec::new(),
    })
}

pub async fn remove(call: &Call<'_>, id: &str) -> Answer {
    let _turn = call.turn().await;
    let (mut document, at) = match document_at(call, id) {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    if let Some(servers) = servers_of(&mut document) {
        servers.remove(at);
    }
    let (status, mut body) = call
        .apply(pretty(&document), &format!("DELETE /api/upstreams/{id}"))
        .await;
    if status != 200 {
        return (status, body);
    }
    // Requests in flight on it finish; then its connections close and it leaves the list.
    body["draining"] = json!(id);
    (202, body)
}

fn pretty(document: &Value) -> String {
    serde_json::to_string_pretty(document).unwrap_or_default()
}
