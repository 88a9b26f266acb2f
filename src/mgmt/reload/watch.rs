//! Watching the config file: inotify (through `notify`) on the file's folder, so writers
//! that replace the file (editors' write-and-rename, `kubectl` ConfigMap updates, which swap
//! a `..data` symlink) are seen as well as writes in place.
//!
//! Only changes to the file's name, its symlink's target name, or `..data` (where a
//! ConfigMap's files really are) count; each nudges the management shard, which waits until
//! they have been quiet for a moment (debounce) and then reloads if the file's bytes
//! changed. Owns: the watcher (its thread is `notify`'s). Must not: read or apply configs.

use crossbeam_channel::Sender;
use notify::{EventKind, RecursiveMode, Watcher};
use std::ffi::{OsStr, OsString};
use std::path::Path;

/// Keeps the watch alive; dropping it stops watching.
pub struct FileWatch {
    _watcher: notify::RecommendedWatcher,
}

/// Watches the folder of `path`; each change sends a nudge on `nudge` (never blocking: one
/// pending nudge is enough).
pub fn start(path: &Path, nudge: Sender<()>) -> notify::Result<FileWatch> {
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let mut names: Vec<OsString> = vec![OsString::from("..data")];
    names.extend(path.file_name().map(OsStr::to_os_string));
    if let Ok(target) = std::fs::read_link(path) {
        names.extend(target.file_name().map(OsStr::to_os_string));
    }
    let concerns = move |e: &notify::Event| {
        e.paths
            .iter()
            .any(|p| p.file_name().is_some_and(|n| names.iter().any(|m| m == n)))
    };
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        match event {
            // Reading the file (the reload itself) must not trigger another reload.
            Ok(e) if matches!(e.kind, EventKind::Access(_)) => {}
            Ok(e) if concerns(&e) => {
                let _ = nudge.try_send(());
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "config file watch failed"),
        }
    })?;
    watcher.watch(&folder, RecursiveMode::NonRecursive)?;
    Ok(FileWatch { _watcher: watcher })
}
