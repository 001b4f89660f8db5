//! The agent's local journal: one small JSON file per step of a deployment, written (atomically, fsynced)
//! before the step starts and again when it ends, and marked acknowledged once the coordinator has the report.
//!
//! This is what makes restarts safe:
//! - a step found *finished* is never run again; its stored report is (re)sent instead;
//! - a step found *started* but not finished was interrupted by the restart: [`Journal::recover`] turns it into a
//!   failed report "interrupted by agent restart" (so Install is never applied twice);
//! - finished but unacknowledged reports form the outbox, sent before anything else: no report is lost.
//!
//! Steps are keyed by deployment id and event, not by command id, so a step re-sent under any command id is
//! recognised.
//!
//! A write that fails (a full disk) leaves the entry as it was and no staged file behind; what that means for the
//! step is the loop's decision (`daemon`: a step whose start cannot be journaled is not run).

use crate::steplog::{self, LogMark};
use rollcage_proto::wire::now_ms;
use rollcage_proto::wire::{StepCommand, StepOutcome, StepReport};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

/// The reason given for a step interrupted by a restart.
pub const INTERRUPTED: &str = "interrupted by agent restart";

/// Journal I/O failed.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Reading or writing a journal file failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A journal file could not be decoded.
    #[error("corrupt journal entry {path}: {detail}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The decoder's message.
        detail: String,
    },
    /// A deployment id from the coordinator cannot be used as a file name.
    #[error("invalid deployment id `{0}` in a command: expected letters, digits, `.`, `_` or `-`")]
    BadId(String),
}

/// Where a step is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum EntryState {
    /// Written just before the step started.
    Started {
        /// When.
        at_ms: i64,
        /// Where the step's output starts in its deployment's `scripts.log` (absent in entries from older agents).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        log_mark: Option<LogMark>,
    },
    /// Written when the step ended.
    Finished {
        /// The report to send.
        report: StepReport,
        /// The coordinator has it.
        acked: bool,
    },
}

/// One journal entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The command as received.
    pub command: StepCommand,
    /// Where the step is.
    pub state: EntryState,
}

/// The journal directory.
#[derive(Debug, Clone)]
pub struct Journal {
    dir: PathBuf,
    max_log_bytes: usize,
}

impl Journal {
    /// Open (create) the journal in `dir`, a private dir (0700; its entries are 0600): it holds the reports of
    /// every deployment, hook output included.
    pub fn open(dir: &Path) -> Result<Self, JournalError> {
        rollcage_runtime::layout::ensure_private_dir(dir).map_err(|source| JournalError::Io {
            what: "creating journal dir",
            path: dir.to_owned(),
            source,
        })?;
        Ok(Self {
            dir: dir.to_owned(),
            max_log_bytes: steplog::DEFAULT_MAX_LOG_BYTES,
        })
    }

    /// Bound the output [`Journal::recover`] attaches to an interrupted step's report.
    pub fn with_max_log_bytes(mut self, max: usize) -> Self {
        self.max_log_bytes = max;
        self
    }

    fn path(&self, cmd: &StepCommand) -> Result<PathBuf, JournalError> {
        let id = &cmd.deployment_id;
        if !rollcage_proto::wire::is_valid_name(id) {
            return Err(JournalError::BadId(id.clone()));
        }
        Ok(self.dir.join(format!("{id}.{}.json", cmd.event.name())))
    }

    fn write(&self, entry: &Entry) -> Result<(), JournalError> {
        let path = self.path(&entry.command)?;
        let io = |what, source| JournalError::Io {
            what,
            path: path.clone(),
            source,
        };
        let tmp = path.with_extension("tmp");
        let bytes = serde_json::to_vec(entry).map_err(|e| JournalError::Corrupt {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        let staged = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| io("creating", e))
            .and_then(|mut f| {
                f.write_all(&bytes).map_err(|e| io("writing", e))?;
                f.sync_all().map_err(|e| io("syncing", e))
            })
            .and_then(|()| std::fs::rename(&tmp, &path).map_err(|e| io("renaming into", e)));
        if let Err(e) = staged {
            // A full disk: what was staged only takes space the next write needs; the entry itself is unchanged.
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        // The rename is durable only once the directory is synced.
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("syncing dir of", e))
    }

    fn read(path: &Path) -> Result<Entry, JournalError> {
        let bytes = std::fs::read(path).map_err(|source| JournalError::Io {
            what: "reading",
            path: path.to_owned(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|e| JournalError::Corrupt {
            path: path.to_owned(),
            detail: e.to_string(),
        })
    }

    /// The entry of this command's step, if any.
    pub fn get(&self, cmd: &StepCommand) -> Result<Option<Entry>, JournalError> {
        let path = self.path(cmd)?;
        if !path.exists() {
            return Ok(None);
        }
        Self::read(&path).map(Some)
    }

    /// Record that the step is about to start.
    pub fn start(&self, cmd: &StepCommand) -> Result<(), JournalError> {
        self.start_marked(cmd, None)
    }

    /// Record that the step is about to start, and where its output will begin.
    pub fn start_marked(
        &self,
        cmd: &StepCommand,
        log_mark: Option<LogMark>,
    ) -> Result<(), JournalError> {
        self.write(&Entry {
            command: cmd.clone(),
            state: EntryState::Started {
                at_ms: now_ms(),
                log_mark,
            },
        })
    }

    /// Record the step's report.
    pub fn finish(&self, cmd: &StepCommand, report: &StepReport) -> Result<(), JournalError> {
        self.write(&Entry {
            command: cmd.clone(),
            state: EntryState::Finished {
                report: report.clone(),
                acked: false,
            },
        })
    }

    /// Record that the coordinator has the report.
    pub fn ack(&self, cmd: &StepCommand, report: &StepReport) -> Result<(), JournalError> {
        self.write(&Entry {
            command: cmd.clone(),
            state: EntryState::Finished {
                report: report.clone(),
                acked: true,
            },
        })
    }

    fn entries(&self) -> Result<Vec<(PathBuf, Entry)>, JournalError> {
        let rd = std::fs::read_dir(&self.dir).map_err(|source| JournalError::Io {
            what: "listing",
            path: self.dir.clone(),
            source,
        })?;
        let mut out = Vec::new();
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "json") {
                match Self::read(&p) {
                    Ok(entry) => out.push((p, entry)),
                    // A torn file cannot exist (writes are renamed into place); anything unreadable is reported
                    // and left for an operator rather than deleted.
                    Err(err) => tracing::error!(error = %err, "skipping unreadable journal entry"),
                }
            }
        }
        Ok(out)
    }

    /// After a restart: turn every started-but-unfinished step into a failed report ("interrupted by agent
    /// restart"), and return the outbox (every unacknowledged report), oldest command first.
    pub fn recover(&self) -> Result<Vec<(StepCommand, StepReport)>, JournalError> {
        let mut outbox = Vec::new();
        for (_, entry) in self.entries()? {
            match entry.state {
                EntryState::Started { log_mark, .. } => {
                    // What the hooks wrote before the restart is the best clue to why it happened.
                    let report = StepReport {
                        command_id: entry.command.command_id,
                        outcome: StepOutcome::Failed,
                        message: format!("{}: {INTERRUPTED}", entry.command.event),
                        hooks: Vec::new(),
                        duration_ms: 0,
                        log: log_mark.and_then(|m| steplog::capture(&m, self.max_log_bytes)),
                    };
                    let report = crate::delivery::wire_form(report);
                    tracing::warn!(deployment = %entry.command.deployment_id, event = %entry.command.event,
                        "step was interrupted by an agent restart; reporting it failed");
                    if let Err(e) = self.finish(&entry.command, &report) {
                        // Sent all the same; the next recovery (if this one's report is not delivered) says the same.
                        tracing::error!(error = %e, "cannot journal the interrupted step's report; sending it anyway");
                    }
                    outbox.push((entry.command, report));
                }
                EntryState::Finished {
                    report,
                    acked: false,
                } => outbox.push((entry.command, report)),
                EntryState::Finished { acked: true, .. } => {}
            }
        }
        outbox.sort_by_key(|(c, _)| c.command_id);
        Ok(outbox)
    }

    /// Remove acknowledged entries older than `max_age_ms` (finished deployments' history).
    pub fn prune(&self, max_age_ms: i64) -> Result<usize, JournalError> {
        let now = std::time::SystemTime::now();
        let mut removed = 0;
        for (path, entry) in self.entries()? {
            if !matches!(entry.state, EntryState::Finished { acked: true, .. }) {
                continue;
            }
            let old = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .is_some_and(|age| age.as_millis() > u128::try_from(max_age_ms).unwrap_or(0));
            if old && std::fs::remove_file(&path).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rollcage_proto::LifecycleEvent;
    use rollcage_proto::wire::{RevisionLocation, RevisionRef};

    pub(crate) fn cmd(id: i64, dep: &str, event: LifecycleEvent) -> StepCommand {
        StepCommand {
            command_id: id,
            deployment_id: dep.into(),
            application: "app".into(),
            group: "web".into(),
            group_id: "g-1".into(),
            event,
            revision: RevisionRef {
                id: "r-1".into(),
                sha256: "0".repeat(64),
                location: RevisionLocation::Url {
                    url: "file:///nope".into(),
                },
                signature: None,
                size: None,
            },
            rollback: false,
            form: None,
            overrides: Default::default(),
        }
    }

    fn ok(id: i64) -> StepReport {
        StepReport {
            command_id: id,
            outcome: StepOutcome::Succeeded,
            message: "done".into(),
            hooks: vec![],
            duration_ms: 1,
            log: None,
        }
    }

    #[test]
    fn the_journal_is_private() -> Result<(), Box<dyn std::error::Error>> {
        use std::os::unix::fs::MetadataExt as _;
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().join("journal");
        let j = Journal::open(&dir)?;
        let a = cmd(1, "d-1", LifecycleEvent::DownloadBundle);
        j.start(&a)?;
        j.finish(&a, &ok(1))?;
        assert_eq!(std::fs::metadata(&dir)?.mode() & 0o777, 0o700);
        for e in std::fs::read_dir(&dir)? {
            let e = e?;
            assert_eq!(e.metadata()?.mode() & 0o777, 0o600, "{:?}", e.path());
        }
        Ok(())
    }

    #[test]
    fn started_steps_become_interrupted_failures_and_unacked_reports_are_resent()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let j = Journal::open(dir.path())?;
        let a = cmd(1, "d-1", LifecycleEvent::DownloadBundle);
        let b = cmd(2, "d-1", LifecycleEvent::ApplicationStop);
        let c = cmd(3, "d-1", LifecycleEvent::BeforeInstall);
        let d = cmd(4, "d-1", LifecycleEvent::Install);
        j.start(&a)?;
        j.finish(&a, &ok(1))?;
        j.ack(&a, &ok(1))?;
        j.start(&b)?;
        j.finish(&b, &ok(2))?;
        j.start(&d)?;
        drop(c);
        let j = Journal::open(dir.path())?; // "restart"
        let outbox = j.recover()?;
        assert_eq!(outbox.len(), 2);
        assert_eq!(outbox[0].1, ok(2));
        assert_eq!(outbox[1].0.event, LifecycleEvent::Install);
        assert_eq!(outbox[1].1.outcome, StepOutcome::Failed);
        assert!(outbox[1].1.message.contains(INTERRUPTED));
        // The interrupted Install is now finished in the journal: it will never run.
        assert!(matches!(
            j.get(&d)?.map(|e| e.state),
            Some(EntryState::Finished { acked: false, .. })
        ));
        // Recovering again yields the same outbox, not a second interruption.
        assert_eq!(j.recover()?, outbox);
        Ok(())
    }

    #[test]
    fn an_interrupted_step_reports_the_output_it_wrote_before_the_restart()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("scripts.log");
        std::fs::write(&log, "[t] [stdout] BeforeInstall a.sh: earlier step\n")?;
        let j = Journal::open(&dir.path().join("journal"))?;
        let c = cmd(3, "d-1", LifecycleEvent::Install);
        j.start_marked(&c, Some(LogMark::at_end_of(&log)))?;
        std::fs::write(
            &log,
            "[t] [stdout] BeforeInstall a.sh: earlier step\n[t] [stdout] Install b.sh: half done\n",
        )?;
        let j = Journal::open(&dir.path().join("journal"))?.with_max_log_bytes(1024); // "restart"
        let outbox = j.recover()?;
        assert_eq!(outbox.len(), 1);
        let text = outbox[0].1.log.as_ref().map(|l| l.text.as_str());
        assert_eq!(text, Some("[t] [stdout] Install b.sh: half done\n"));
        Ok(())
    }

    #[test]
    fn a_hostile_deployment_id_is_refused() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let j = Journal::open(dir.path())?;
        let bad = cmd(1, "../../etc", LifecycleEvent::Install);
        assert!(matches!(j.start(&bad), Err(JournalError::BadId(_))));
        Ok(())
    }
}
