//! `cache`: the original gateway's cache layers (memory, Redis, file).
//!
//! Owns: the keys and defaults, so the original's files load unchanged. The runtime config
//! does not carry these yet. Must not: check values (`validate/`).

use serde::{Deserialize, Serialize};

/// `cache`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct CacheSection {
    pub enabled: bool,
    pub layers: CacheLayers,
}

impl Default for CacheSection {
    fn default() -> Self {
        CacheSection {
            enabled: true,
            layers: CacheLayers::default(),
        }
    }
}

/// `cache.layers`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct CacheLayers {
    pub memory: MemoryLayer,
    pub redis: RedisLayer,
    pub file: FileLayer,
}

/// `cache.layers.memory`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct MemoryLayer {
    pub enabled: bool,
    /// Bytes.
    pub max_size: i64,
}

impl Default for MemoryLayer {
    fn default() -> Self {
        MemoryLayer {
            enabled: true,
            max_size: 104_857_600,
        }
    }
}

/// `cache.layers.redis`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct RedisLayer {
    pub enabled: bool,
    /// `REDIS_URL`.
    pub url: String,
    /// `REDIS_PASSWORD`.
    pub password: Option<String>,
}

impl Default for RedisLayer {
    fn default() -> Self {
        RedisLayer {
            enabled: false,
            url: "redis://localhost:6379".to_string(),
            password: None,
        }
    }
}

/// `cache.layers.file`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct FileLayer {
    pub enabled: bool,
    pub directory: String,
}

impl Default for FileLayer {
    fn default() -> Self {
        FileLayer {
            enabled: false,
            directory: "./cache".to_string(),
        }
    }
}
