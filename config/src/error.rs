//! Errors of loading a config: one `ConfigError` per problem found, `LoadError` for the whole.
//!
//! Owns: the error types and how they print (`mcp-gateway check` shows them to operators).
//! Must not: decide what is an error; the schema walk, env overrides and validation do.

use std::fmt;
use std::path::PathBuf;

/// One problem in the config: where, what is wrong, and what would be accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Path of the key, e.g. `upstream.servers[3].weight`, or `env PORT` for a variable.
    pub path: String,
    pub message: String,
    /// What is accepted there, when that fits in a few words.
    pub allowed: Option<String>,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            message: message.into(),
            allowed: None,
        }
    }

    pub fn with_allowed(mut self, allowed: impl Into<String>) -> Self {
        self.allowed = Some(allowed.into());
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "(root)"
        } else {
            &self.path
        };
        write!(f, "{}: {}", path, self.message)?;
        if let Some(allowed) = &self.allowed {
            write!(f, " (allowed: {allowed})")?;
        }
        Ok(())
    }
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Not JSON (with comments); `line` and `column` are 1-based.
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// Valid JSON, but not a valid config: every problem found.
    #[error("{}", format_invalid(.0))]
    Invalid(Vec<ConfigError>),
}

impl LoadError {
    /// One line per problem: each `ConfigError` for `Invalid`, else the error itself.
    pub fn errors(&self) -> Vec<String> {
        match self {
            LoadError::Invalid(errors) => errors.iter().map(|e| e.to_string()).collect(),
            other => vec![other.to_string()],
        }
    }
}

fn format_invalid(errors: &[ConfigError]) -> String {
    let mut text = match errors.len() {
        1 => "invalid configuration (1 error):".to_string(),
        n => format!("invalid configuration ({n} errors):"),
    };
    for error in errors {
        text.push_str("\n  - ");
        text.push_str(&error.to_string());
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_lists_every_error_on_its_own_line() {
        let err = LoadError::Invalid(vec![
            ConfigError::new("server.port", "must be at most 65535").with_allowed("0..=65535"),
            ConfigError::new("", "expected an object, found an array"),
        ]);
        let text = err.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(
            lines[1],
            "  - server.port: must be at most 65535 (allowed: 0..=65535)"
        );
        assert_eq!(lines[2], "  - (root): expected an object, found an array");
        assert_eq!(err.errors().len(), 2);
    }

    #[test]
    fn parse_error_names_file_line_and_column() {
        let err = LoadError::Parse {
            path: "a.json".to_string(),
            line: 3,
            column: 7,
            message: "expected value".to_string(),
        };
        assert_eq!(err.to_string(), "a.json:3:7: expected value");
        assert_eq!(err.errors(), vec!["a.json:3:7: expected value".to_string()]);
    }
}
