//! Loading a config off the management thread: reading the file and validating it may
//! block (file I/O, DNS of upstream host names), so a thread of its own does it and the
//! management shard awaits the answer without blocking its runtime.
//!
//! It also writes the file for the admin API's `?persist=true` (file I/O, off the
//! management thread too).
//!
//! Owns: the loader thread and its job queue (bounded). Must not: apply anything; it only
//! turns text into a validated config or an error list, and writes what it is given.

use crossbeam_channel::{Receiver, Sender, TrySendError};
use mcp_gateway_config::{LoadError, Loaded};
use std::path::PathBuf;
use std::time::Duration;

/// Where a config comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// The file, unless its SHA-256 is this one (a change in its folder that left it as is).
    File {
        path: PathBuf,
        unless: Option<String>,
    },
    /// Text given through the admin API.
    Text(String),
}

/// A loaded config and the text it came from.
pub struct Parsed {
    pub loaded: Loaded,
    /// SHA-256 of `text`, hex: what `sha256sum` prints for the file.
    pub sha256: String,
}

pub enum Outcome {
    Parsed(Box<Parsed>),
    /// `Source::File` whose bytes are the ones named.
    Unchanged,
    /// Invalid; for a file, also the SHA-256 of the bytes read (so the same bad file is not
    /// reloaded again at each change in its folder).
    Failed(LoadError, Option<String>),
}

enum Job {
    Load {
        source: Source,
        reply: Sender<Outcome>,
    },
    /// Writes `text` to `path` atomically, keeping the previous file as `path.bak`.
    Write {
        path: PathBuf,
        text: String,
        reply: Sender<Result<(), String>>,
    },
}

/// Jobs waiting at once; more are refused (a reload storm cannot queue without end).
const QUEUE: usize = 8;
/// How often the management shard looks for the answer.
const POLL: Duration = Duration::from_millis(5);
/// Validation resolves host names; one that takes longer than this is given up.
const LONGEST: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct Loader {
    jobs: Sender<Job>,
}

impl Loader {
    /// `environment`: whether configs take the process environment's overrides (as the
    /// config file does at start-up; the demo's config does not).
    pub fn start(environment: bool) -> std::io::Result<Loader> {
        let (jobs, queue) = crossbeam_channel::bounded(QUEUE);
        std::thread::Builder::new()
            .name("config-loader".into())
            .spawn(move || serve(queue, environment))?;
        Ok(Loader { jobs })
    }

    /// Loads and validates `source`, as `mcp-gateway check` would.
    pub async fn load(&self, source: Source) -> Outcome {
        let (reply, answer) = crossbeam_channel::bounded(1);
        match self.ask(Job::Load { source, reply }, answer).await {
            Ok(outcome) => outcome,
            Err(why) => Outcome::Failed(
                LoadError::Invalid(vec![mcp_gateway_config::ConfigError::new("", why)]),
                None,
            ),
        }
    }

    /// Writes `text` to `path` (temp file, fsync, previous kept as `.bak`, rename).
    pub async fn persist(&self, path: PathBuf, text: String) -> Result<(), String> {
        let (reply, answer) = crossbeam_channel::bounded(1);
        self.ask(Job::Write { path, text, reply }, answer).await?
    }

    async fn ask<T>(&self, job: Job, answer: Receiver<T>) -> Result<T, String> {
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err("the config loader is busy; try again".into()),
            Err(TrySendError::Disconnected(_)) => return Err("the config loader is gone".into()),
        }
        let deadline = std::time::Instant::now() + LONGEST;
        loop {
            match answer.try_recv() {
                Ok(result) => return Ok(result),
                Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    return Err("the config loader is gone".into())
                }
                Err(crossbeam_channel::TryRecvError::Empty) => {}
            }
            if std::time::Instant::now() >= deadline {
                return Err("the config loader is too slow (name resolution?)".into());
            }
            monoio::time::sleep(POLL).await;
        }
    }
}

fn serve(queue: Receiver<Job>, environment: bool) {
    for job in queue {
        match job {
            Job::Load { source, reply } => {
                let _ = reply.send(load(source, environment));
            }
            Job::Write { path, text, reply } => {
                let _ = reply.send(write(&path, &text).map_err(|e| e.to_string()));
            }
        }
    }
}

fn load(source: Source, environment: bool) -> Outcome {
    match source {
        Source::File { path, unless } => match std::fs::read_to_string(&path) {
            Ok(text) => {
                let sha = sha256(&text);
                if unless.as_deref() == Some(sha.as_str()) {
                    return Outcome::Unchanged;
                }
                match parse(&path.display().to_string(), text, environment) {
                    Outcome::Failed(e, _) => Outcome::Failed(e, Some(sha)),
                    parsed => parsed,
                }
            }
            Err(source) => Outcome::Failed(LoadError::Io { path, source }, None),
        },
        Source::Text(text) => parse("<admin API>", text, environment),
    }
}

/// Writes `text` over the file at `path` (through a symlink, to its target) so that a
/// reader sees the old file or the new one, never a part: a new file next to it (created
/// exclusively, so a planted link is not followed), with the old one's permissions and
/// owner, synced, the old one copied to `.bak`, then renamed over it and the folder synced.
fn write(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "config".into());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let tmp = path.with_file_name(format!(".{name}.{}.{nanos}.tmp", std::process::id()));
    let old = std::fs::metadata(&path).ok();
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        if let Some(old) = &old {
            file.set_permissions(old.permissions())?;
            // Only root may give a file away; anyone else keeps their own as owner.
            let _ = std::os::unix::fs::fchown(&file, Some(old.uid()), Some(old.gid()));
        }
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        if old.is_some() {
            std::fs::copy(&path, path.with_file_name(format!("{name}.bak")))?;
        }
        std::fs::rename(&tmp, &path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    if let Some(folder) = path.parent() {
        std::fs::File::open(folder)?.sync_all()?;
    }
    Ok(())
}

fn parse(name: &str, text: String, environment: bool) -> Outcome {
    let env: &dyn Fn(&str) -> Option<String> = if environment {
        &mcp_gateway_config::process_env
    } else {
        &|_| None
    };
    match mcp_gateway_config::parse_document(name, &text, env) {
        Ok(mut loaded) => {
            // Keys at URLs are fetched here, off the management shard.
            for warning in crate::jwks::fill(&mut loaded.config) {
                let at = "security.authentication.oauth2.issuers";
                let warning = mcp_gateway_config::ConfigError::new(at, warning);
                loaded.warnings.push(warning);
            }
            Outcome::Parsed(Box::new(Parsed {
                loaded,
                sha256: sha256(&text),
            }))
        }
        Err(e) => Outcome::Failed(e, None),
    }
}

/// Hex SHA-256 of `text`.
pub fn sha256(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
