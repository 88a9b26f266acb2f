//! What starts a reload: SIGHUP (the main thread forwards it) and changes in the config
//! file's folder (debounced: the folder must be quiet for a moment, so an editor's several
//! writes make one reload); and the admin API, which calls [`load_and_apply`] itself.
//!
//! Owns: the debounce and one-at-a-time order of reloads. Must not: block (it polls its
//! channels at a short interval on the management runtime).

use super::loader::{Outcome, Source};
use super::Report;
use crate::mgmt::server::Shards;
use crate::mgmt::State;
use crossbeam_channel::Receiver;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How often the channels are looked at.
const POLL: Duration = Duration::from_millis(50);
/// How long the file must be quiet after a change before it is read.
const QUIET: Duration = Duration::from_millis(150);
/// A file that keeps changing is read at the latest this long after its first change.
const LONGEST_WAIT: Duration = Duration::from_secs(2);

/// Holds the reload turn; dropping it lets the next reload go.
pub struct Turn {
    state: Rc<RefCell<State>>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.state.borrow_mut().reload.busy = false;
    }
}

/// Waits until no other reload is under way, then takes the turn.
pub async fn take_turn(state: &Rc<RefCell<State>>) -> Turn {
    loop {
        {
            let mut s = state.borrow_mut();
            if !s.reload.busy {
                s.reload.busy = true;
                return Turn {
                    state: state.clone(),
                };
            }
        }
        monoio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Why a reload did not happen.
pub enum NotApplied {
    /// The file is byte for byte the running config.
    Unchanged,
    /// The config is invalid: its errors, one per line.
    Refused(Vec<String>),
}

/// Loads `source` and applies it; the caller holds the turn. `by` names who asked (logged).
pub async fn load_and_apply(
    state: &Rc<RefCell<State>>,
    shards: &Shards,
    source: Source,
    by: &str,
) -> Result<Report, NotApplied> {
    let loader = state.borrow().reload.loader.clone();
    let from_file = matches!(source, Source::File { .. });
    match loader.load(source).await {
        Outcome::Unchanged => Err(NotApplied::Unchanged),
        Outcome::Failed(e, sha) => {
            let errors = e.errors();
            let mut s = state.borrow_mut();
            if let (true, Some(sha)) = (from_file, sha) {
                s.reload.file_sha256 = sha;
            }
            super::refused(&mut s, &errors, by);
            Err(NotApplied::Refused(errors))
        }
        Outcome::Parsed(parsed) => {
            let mut s = state.borrow_mut();
            if from_file {
                s.reload.file_sha256 = parsed.sha256.clone();
                s.reload.file_applied_sha256 = parsed.sha256.clone();
            }
            let report = super::apply(&mut s, shards, *parsed);
            super::log_applied(&report, by);
            Ok(report)
        }
    }
}

/// Reloads from the file on SIGHUP (always) and after changes in its folder (when its
/// bytes changed), forever.
pub async fn run(
    state: Rc<RefCell<State>>,
    shards: Shards,
    hup: Receiver<()>,
    nudges: Receiver<()>,
) {
    let mut changed_at: Option<Instant> = None;
    let mut first_change: Option<Instant> = None;
    let mut forced = false;
    loop {
        monoio::time::sleep(POLL).await;
        while nudges.try_recv().is_ok() {
            changed_at = Some(Instant::now());
            first_change.get_or_insert_with(Instant::now);
        }
        while hup.try_recv().is_ok() {
            forced = true;
        }
        let settled = changed_at.is_some_and(|at| at.elapsed() >= QUIET)
            || first_change.is_some_and(|at| at.elapsed() >= LONGEST_WAIT);
        if !forced && !settled {
            continue;
        }
        first_change = None;
        let Some(path) = state.borrow().reload.path.clone() else {
            forced = false;
            changed_at = None;
            continue;
        };
        let _turn = take_turn(&state).await;
        // A change in the folder that left the file's bytes as last read is not a reload
        // (nor does it undo a change made through the admin API and not persisted).
        let unless = (!forced).then(|| state.borrow().reload.file_sha256.clone());
        let by = if forced { "SIGHUP" } else { "file change" };
        forced = false;
        changed_at = None;
        let _ = load_and_apply(&state, &shards, Source::File { path, unless }, by).await;
    }
}
