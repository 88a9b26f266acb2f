//! Config model, defaults, environment overrides and validation for mcp-gateway.
//!
//! Owns: turning the text of `api-gateway.config.json` (JSON with comments) plus the
//! environment into a validated, immutable `GatewayConfig`, or into a list of every problem.
//! The steps, in order:
//!
//! 1. `jsonc`: blank out comments, keeping line numbers; parse strict JSON.
//! 2. `env`: write environment overrides into the JSON (`PORT`, `HTTPS_PORT`, `HOST`,
//!    `CLUSTER_WORKERS`, `MAX_CONNECTIONS`, `KEEP_ALIVE_TIMEOUT`, `DASHBOARD_PORT`,
//!    `MONITORING_ENABLED`, `LOG_LEVEL`, `LOG_FILE`, `JWT_SECRET`, `API_KEY_HEADER`,
//!    `SESSION_SECRET`, `REDIS_URL`, `REDIS_PASSWORD`).
//! 3. `schema`: report unknown keys (with "did you mean") and wrong JSON types.
//! 4. serde: read the JSON into the user types of `user`.
//! 5. `validate`: ranges, names, URLs, origins, headers; expand `${NAME}` in upstream header
//!    values through the same `env` lookup; resolve upstream hosts (blocking, on this thread).
//! 6. `convert`: build the runtime types of `runtime`.
//!
//! Must not: be called from a shard's I/O thread (step 5 may do DNS), or log; callers print
//! the errors.

#![forbid(unsafe_code)]

mod convert;
mod duplicates;
mod env;
mod error;
mod jsonc;
pub mod runtime;
mod runtime_security;
mod schema;
mod url;
pub mod user;
mod validate;

use std::fs;
use std::io::Write;
use std::path::Path;

pub use error::{ConfigError, LoadError};
pub use runtime::*;
pub use runtime_security::*;
pub use validate::{hash_text, key_hash, parse_jwks, ADMIN_ROLE, ALGORITHMS};

/// The commented default config written by `load_or_create` when the file is missing.
pub const DEFAULT_CONFIG_TEXT: &str = include_str!("default_config.jsonc");

/// The name used in parse errors of text that did not come from a file.
const TEXT_SOURCE: &str = "<config>";

/// A config as loaded, in the three forms a running gateway needs.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// What the gateway runs on.
    pub config: GatewayConfig,
    /// The file's settings with the environment's overrides applied, every default filled
    /// in (what `GET /api/config` shows, secrets redacted).
    pub effective: user::UserConfig,
    /// The document as written, comments removed, environment not applied: what a change
    /// made through the admin API edits and writes back, so values that come from the
    /// environment stay out of the file.
    pub document: serde_json::Value,
    /// What is valid but likely not meant (a plain API key, a short JWT secret, ...):
    /// `check` prints these, and the gateway logs them at start and on reload.
    pub warnings: Vec<ConfigError>,
}

/// Parses config text (JSON with comments), applies environment overrides through `env`, and
/// validates it.
pub fn parse_str(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<GatewayConfig, LoadError> {
    parse_named(TEXT_SOURCE, text, env).map(|loaded| loaded.config)
}

/// Like `parse_str`, keeping the effective settings and the document (see [`Loaded`]);
/// `source` names the text in parse errors.
pub fn parse_document(
    source: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, LoadError> {
    parse_named(source, text, env)
}

/// Reads and parses a config file; see `parse_str`.
pub fn load_file(
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<GatewayConfig, LoadError> {
    let text = fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_named(&path.display().to_string(), &text, env).map(|loaded| loaded.config)
}

/// Loads `path`; when it does not exist, first writes `DEFAULT_CONFIG_TEXT` there (creating
/// parent folders). The bool is true when the file was created.
pub fn load_or_create(
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(GatewayConfig, bool), LoadError> {
    let created = ensure_file(path)?;
    load_file(path, env).map(|config| (config, created))
}

/// Writes `DEFAULT_CONFIG_TEXT` to `path` if nothing is there; true when it did.
pub fn ensure_file(path: &Path) -> Result<bool, LoadError> {
    match fs::metadata(path) {
        Ok(_) => Ok(false),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => write_default(path),
        Err(source) => Err(LoadError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Reads a variable from the process environment: the `env` argument for production.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Writes the default file unless something created it meanwhile; true when this call did.
fn write_default(path: &Path) -> Result<bool, LoadError> {
    let io_error = |source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(io_error)?;
    }
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path);
    match file {
        Ok(mut file) => {
            file.write_all(DEFAULT_CONFIG_TEXT.as_bytes())
                .map_err(io_error)?;
            Ok(true)
        }
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(err) => Err(io_error(err)),
    }
}

fn parse_named(
    source: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, LoadError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let json = jsonc::strip_comments(text).map_err(|err| LoadError::Parse {
        path: source.to_string(),
        line: err.line,
        column: err.column,
        message: err.message,
    })?;
    let parse_error = |err: serde_json::Error| LoadError::Parse {
        path: source.to_string(),
        line: err.line(),
        column: err.column(),
        message: serde_message(&err),
    };
    let mut value: serde_json::Value = serde_json::from_str(&json).map_err(parse_error)?;
    duplicates::check(&json).map_err(parse_error)?;
    let document = value.clone();

    let (applied, mut errors) = env::apply(&mut value, env);
    let schema_errors = schema::check(&mut value);

    let user: user::UserConfig = match serde_json::from_value(value) {
        Ok(user) => user,
        Err(err) => {
            errors.extend(schema_errors);
            errors.push(ConfigError::new("", serde_message(&err)));
            return Err(LoadError::Invalid(errors));
        }
    };

    let checked = validate::validate(&user, env);
    let reported: Vec<String> = schema_errors.iter().map(|e| e.path.clone()).collect();
    errors.extend(schema_errors);
    let checked = match checked {
        Ok(checked) => Some(checked),
        Err(validation_errors) => {
            for mut error in validation_errors {
                if reported.iter().any(|path| is_under(&error.path, path)) {
                    continue;
                }
                if let Some(var) = applied.iter().find(|a| a.path == error.path) {
                    error.message = format!("{} (set by env {})", error.message, var.var);
                }
                errors.push(error);
            }
            None
        }
    };

    match checked {
        Some(checked) if errors.is_empty() => Ok(Loaded {
            warnings: checked.security.warnings.clone(),
            config: convert::to_runtime(&user, checked),
            effective: user,
            document,
        }),
        _ => Err(LoadError::Invalid(errors)),
    }
}

/// True when `path` is `parent` or inside it (`parent.key`, `parent[0]`); "" is the root.
fn is_under(path: &str, parent: &str) -> bool {
    match path.strip_prefix(parent) {
        Some(rest) => parent.is_empty() || rest.is_empty() || rest.starts_with(['.', '[']),
        None => false,
    }
}

/// serde_json's message without its " at line L column C" suffix (we report those apart).
fn serde_message(err: &serde_json::Error) -> String {
    let text = err.to_string();
    match text.rfind(" at line ") {
        Some(index) => text[..index].to_string(),
        None => text,
    }
}

#[cfg(test)]
mod tests;
