//! The admin API under `/api` on the management port: the running config (read, replace,
//! validate) and its upstream servers (list, add, change, drain, remove), JSON in and out,
//! described by `GET /api/openapi.json`.
//!
//! Authorization is the admin API's (`sessions.adminToken` / `ADMIN_TOKEN` as a bearer
//! token; without one, loopback clients of a loopback-only port). Every change is logged
//! with the caller's address. Changes go through the same reload path as the config file
//! (`reload::trigger::load_and_apply`), one at a time; `?persist=true` writes the result to
//! the config file (temp file and rename; the previous file kept as `.bak`).
//!
//! Owns: the routes, their JSON shapes and the OpenAPI document. Must not: apply a config
//! any other way than a reload does, or block the management thread.

mod config;
mod upstreams;

use super::admin::{self, AdminRequest};
use super::reload::trigger::{load_and_apply, take_turn, NotApplied, Turn};
use super::reload::Report;
use super::server::Shards;
use super::State;
use serde_json::{json, Value};
use std::cell::RefCell;
use std::rc::Rc;

/// The OpenAPI document, served as is; a unit test checks it lists exactly [`ROUTES`].
pub const OPENAPI: &str = include_str!("openapi.json");

/// Every route: method and path template, as in the OpenAPI document.
pub const ROUTES: [(&str, &str); 9] = [
    ("get", "/api/openapi.json"),
    ("get", "/api/config"),
    ("put", "/api/config"),
    ("post", "/api/config/validate"),
    ("get", "/api/upstreams"),
    ("post", "/api/upstreams"),
    ("get", "/api/upstreams/{id}"),
    ("patch", "/api/upstreams/{id}"),
    ("delete", "/api/upstreams/{id}"),
];

/// The largest request body the API reads (a whole config of 1000+ servers fits).
pub const MAX_BODY: usize = 8 * 1024 * 1024;

/// API bodies read at once on the management port; over it, 503 before reading.
pub const MAX_BODIES_READING: usize = 2;

/// Decides from the head alone whether to refuse an API request before its body is read:
/// a caller without the token, or too many bodies being read already (`reading`).
pub fn refuse_early(
    config: &mcp_gateway_config::GatewayConfig,
    req: &AdminRequest,
    body_len: usize,
    reading: usize,
) -> Option<Answer> {
    let path = req.target.split('?').next().unwrap_or("");
    if path != "/api/openapi.json" {
        if let Err((status, body)) = admin::authorize(config, req) {
            return Some(denied(status, &body));
        }
    }
    (body_len > 0 && reading >= MAX_BODIES_READING)
        .then(|| error(503, "the admin API is reading other bodies; try again"))
}

fn denied(status: u16, body: &[u8]) -> Answer {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_default();
    error(status, &message)
}

/// One API request, its body read.
pub struct ApiRequest {
    pub admin: AdminRequest,
    pub body: Vec<u8>,
    /// Who asked, for the log of changes.
    pub peer: std::net::SocketAddr,
}

/// An answer: status and JSON body.
pub type Answer = (u16, Value);

pub fn error(status: u16, message: &str) -> Answer {
    (
        status,
        json!({"error": {"code": status, "message": message}}),
    )
}

/// Answers a request under `/api`.
pub async fn answer(state: &Rc<RefCell<State>>, shards: &Shards, req: ApiRequest) -> Answer {
    let (path, query) = req
        .admin
        .target
        .split_once('?')
        .unwrap_or((&req.admin.target, ""));
    let (path, query) = (path.to_string(), query.to_string());
    let method = req.admin.method.to_ascii_lowercase();
    if path == "/api/openapi.json" {
        return match method.as_str() {
            "get" | "head" => (200, serde_json::from_str(OPENAPI).unwrap_or(Value::Null)),
            _ => error(405, "use GET"),
        };
    }
    let config = state.borrow().config.clone();
    if let Err((status, body)) = admin::authorize(&config, &req.admin) {
        return denied(status, &body);
    }
    let persist = query
        .split('&')
        .any(|kv| kv == "persist=true" || kv == "persist=1");
    let call = Call {
        state,
        shards,
        peer: req.peer,
        persist,
    };
    let id = path
        .strip_prefix("/api/upstreams/")
        .filter(|id| !id.is_empty() && !id.contains('/'));
    match (method.as_str(), path.as_str(), id) {
        ("get", "/api/config", _) => config::show(state),
        ("put", "/api/config", _) => config::replace(&call, req.body).await,
        ("post", "/api/config/validate", _) => config::validate(&call, req.body).await,
        ("get", "/api/upstreams", _) => upstreams::list(&state.borrow()),
        ("post", "/api/upstreams", _) => upstreams::add(&call, &req.body).await,
        ("get", _, Some(id)) => upstreams::show(&state.borrow(), id),
        ("patch", _, Some(id)) => upstreams::change(&call, id, &req.body).await,
        ("delete", _, Some(id)) => upstreams::remove(&call, id).await,
        _ if ROUTES
            .iter()
            .any(|(_, template)| matches_template(template, &path)) =>
        {
            error(405, "method not allowed here; see GET /api/openapi.json")
        }
        _ => error(404, "no such API route; see GET /api/openapi.json"),
    }
}

/// Whether `path` fits a route template (`{name}` matches one non-empty segment).
fn matches_template(template: &str, path: &str) -> bool {
    let (mut t, mut p) = (template.split('/'), path.split('/'));
    loop {
        match (t.next(), p.next()) {
            (None, None) => return true,
            (Some(ts), Some(ps)) if ts.starts_with('{') && !ps.is_empty() => {}
            (Some(ts), Some(ps)) if ts == ps => {}
            _ => return false,
        }
    }
}

/// What a changing request carries along.
pub struct Call<'a> {
    pub state: &'a Rc<RefCell<State>>,
    pub shards: &'a Shards,
    pub peer: std::net::SocketAddr,
    pub persist: bool,
}

impl Call<'_> {
    /// Applies `text` as the new config (the caller holds the turn) and, with `?persist`,
    /// writes it to the config file. 200 with the reload report, or 400 with every error.
    pub async fn apply(&self, text: String, what: &str) -> Answer {
        if self.persist {
            if let Err(refusal) = self.file_as_last_read().await {
                return refusal;
            }
        }
        let by = format!("admin API {what} from {}", self.peer);
        let source = super::reload::loader::Source::Text(text.clone());
        match load_and_apply(self.state, self.shards, source, &by).await {
            Ok(report) => {
                let mut body = applied(&report);
                body["shardsOn"] = json!(self.shards_on(report.generation).await);
                if self.persist {
                    match self.write_file(text).await {
                        Ok(path) => body["persisted"] = json!(path),
                        Err(e) => {
                            tracing::warn!(error = %e, "admin API: could not persist the config");
                            return (
                                500,
                                json!({"error": {"code": 500, "message": format!("applied, but not persisted: {e}")}, "reload": body}),
                            );
                        }
                    }
                }
                (200, body)
            }
            Err(NotApplied::Refused(errors)) => invalid(errors),
            Err(NotApplied::Unchanged) => (200, json!({"unchanged": true})),
        }
    }

    /// With `?persist`: the file must be as the gateway last read or wrote it, so that an
    /// edit on disk not yet (or never) applied is not overwritten.
    async fn file_as_last_read(&self) -> Result<(), Answer> {
        let (loader, path, sha) = {
            let s = self.state.borrow();
            let r = &s.reload;
            (
                r.loader.clone(),
                r.path.clone(),
                r.file_applied_sha256.clone(),
            )
        };
        let Some(path) = path else {
            return Err(error(
                409,
                "this gateway runs without a config file (demo): nothing to persist to",
            ));
        };
        let source = super::reload::loader::Source::File {
            path,
            unless: Some(sha),
        };
        match loader.load(source).await {
            super::reload::loader::Outcome::Unchanged => Ok(()),
            _ => Err(error(
                409,
                "the config file changed on disk since the gateway read it; not overwritten (reload it first)",
            )),
        }
    }

    async fn write_file(&self, text: String) -> Result<String, String> {
        let (loader, path) = {
            let s = self.state.borrow();
            (s.reload.loader.clone(), s.reload.path.clone())
        };
        let path = path.ok_or("no config file")?;
        let sha = super::reload::loader::sha256(&text);
        loader.persist(path.clone(), text).await?;
        // The watch sees the write; these bytes are the running config already.
        let mut s = self.state.borrow_mut();
        s.reload.file_sha256 = sha.clone();
        s.reload.file_applied_sha256 = sha;
        drop(s);
        tracing::info!(peer = %self.peer, path = %path.display(), "admin API: config written to the file (previous kept as .bak)");
        Ok(path.display().to_string())
    }

    /// Waits (a few ticks at most) until every shard runs `generation`, so that an answer
    /// means the change is in force; returns the generation they all run.
    pub async fn shards_on(&self, generation: u64) -> u64 {
        let tick = self.state.borrow().config.monitoring.metrics_tick;
        let deadline = std::time::Instant::now() + tick * 8;
        loop {
            let on = self
                .state
                .borrow()
                .totals
                .generations
                .iter()
                .copied()
                .min()
                .unwrap_or(generation);
            if on >= generation || std::time::Instant::now() >= deadline {
                return on;
            }
            monoio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    pub async fn turn(&self) -> Turn {
        take_turn(self.state).await
    }
}

pub fn applied(report: &Report) -> Value {
    json!({"applied": true, "reload": report.to_json()})
}

pub fn invalid(errors: Vec<String>) -> Answer {
    (
        400,
        json!({"error": {"code": 400, "message": "invalid config; nothing was changed"}, "errors": errors}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_lists_exactly_the_routes_served() {
        let doc: Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON");
        let mut listed = Vec::new();
        for (path, ops) in doc["paths"].as_object().expect("paths") {
            for method in ops.as_object().expect("operations").keys() {
                if ["get", "put", "post", "patch", "delete"].contains(&method.as_str()) {
                    listed.push((method.clone(), path.clone()));
                }
            }
        }
        listed.sort();
        let mut served: Vec<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        served.sort();
        assert_eq!(listed, served);
    }
}
