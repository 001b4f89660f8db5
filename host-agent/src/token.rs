//! The agent's own token file: read it, or enroll and keep the new token there (mode 0600); and when the
//! coordinator refuses it, set it aside so that no later start reuses a dead token.
//!
//! A refused token (401) means the instance was removed, its name re-enrolled by someone else, or the coordinator's
//! data reset: retrying with it cannot help. What the agent does then is [`after_refusal`]'s decision: enroll again
//! through its enrollment credential if it has one (once per run, so two hosts sharing a name cannot take it from
//! each other for ever), else stop with [`crate::EXIT_REFUSED`], which the systemd unit does not restart.

use crate::daemon::{AgentError, Backoff};
use rollcage_client::Client;
use rollcage_proto::wire::{EnrollRequest, EnrollResponse, InstanceState};
use std::path::{Path, PathBuf};

/// Where a refused token is moved (next to the token file): kept for an operator to look at, never read by the
/// agent.
pub fn refused_path(token_file: &Path) -> PathBuf {
    let mut name = token_file
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "token".into());
    name.push(".refused");
    token_file.with_file_name(name)
}

/// What to do once the coordinator refused the agent's token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterRefusal {
    /// Enroll again with the enrollment credential and go on.
    Reenroll,
    /// Stop: an operator has to re-enroll the agent.
    Stop,
}

/// Re-enroll only with an enrollment credential, and only once per run: a second refusal means another agent holds
/// the name, and taking it back again would only start a tug of war. Never for an instance an operator removed
/// (`instance_removed`): coming back takes the operator. Pure.
pub fn after_refusal(
    has_enroll_token: bool,
    reenrolled_already: bool,
    removed: bool,
) -> AfterRefusal {
    if has_enroll_token && !reenrolled_already && !removed {
        AfterRefusal::Reenroll
    } else {
        AfterRefusal::Stop
    }
}

/// Move a refused token file aside (to [`refused_path`]); returns where it went.
pub fn set_aside(token_file: &Path) -> Result<PathBuf, AgentError> {
    let to = refused_path(token_file);
    match std::fs::rename(token_file, &to) {
        Ok(()) => Ok(to),
        // Nothing to set aside (the file was removed by hand meanwhile): nothing can reuse it either.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(to),
        Err(source) => {
            // Renaming needs no space; if it still fails, removing is the other way to never reuse the token.
            std::fs::remove_file(token_file).map_err(|_| AgentError::Io {
                what: "setting aside the refused token file",
                path: token_file.to_owned(),
                source,
            })?;
            Ok(token_file.to_owned())
        }
    }
}

/// Get this agent's token: from `token_file` if it exists, else by enrolling (and saving it there, mode 0600).
pub async fn obtain(
    client: &Client,
    name: &str,
    token_file: &Path,
    enroll_token: Option<&str>,
    tags: &rollcage_proto::tags::Tags,
    backoff: Backoff,
) -> Result<String, AgentError> {
    if token_file.is_file() {
        let t = std::fs::read_to_string(token_file).map_err(|source| AgentError::Io {
            what: "reading token file",
            path: token_file.to_owned(),
            source,
        })?;
        let t = t.trim().to_owned();
        if !t.is_empty() {
            return Ok(t);
        }
    }
    let Some(enroll) = enroll_token else {
        let refused = refused_path(token_file);
        return Err(AgentError::NoToken {
            token_file: token_file.to_owned(),
            refused: refused.is_file().then_some(refused),
        });
    };
    let enroller = client.with_token(Some(enroll.to_owned()));
    let mut attempt = 0;
    let resp: EnrollResponse = loop {
        match enroller
            .enroll(&EnrollRequest {
                name: name.to_owned(),
                tags: tags.clone(),
            })
            .await
        {
            Ok(r) => break r,
            Err(e) if e.is_retryable() => {
                tracing::warn!(error = %e, "enrollment failed; retrying");
                tokio::time::sleep(backoff.delay(attempt)).await;
                attempt += 1;
            }
            Err(e) => return Err(AgentError::EnrollRefused(Box::new(e))),
        }
    };
    persist(token_file, &resp.token, backoff).await;
    match resp.state {
        InstanceState::Pending => tracing::warn!(instance = %resp.instance,
            "enrolled, pending approval: no deployment reaches this host until an operator runs `rollcage instances approve {}`",
            resp.instance),
        InstanceState::Approved => tracing::info!(instance = %resp.instance, "enrolled"),
    }
    Ok(resp.token)
}

/// Write the token file, retrying until it is written: the coordinator has just replaced the instance's token, so an
/// agent that gave up here (a full disk) would lose the only copy of the new one.
async fn persist(token_file: &Path, token: &str, backoff: Backoff) {
    let mut attempt = 0;
    loop {
        match token_file
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .map_err(|e| e.to_string())
            .and_then(|()| {
                rollcage_secretfile::write_secret(token_file, token.as_bytes())
                    .map_err(|e| e.to_string())
            }) {
            Ok(()) => return,
            Err(error) => {
                let d = backoff.delay(attempt);
                tracing::error!(%error, path = %token_file.display(), retry_in_ms = d.as_millis() as u64,
                    "cannot save the agent's new token; retrying (free space on the agent's disk?)");
                attempt += 1;
                tokio::time::sleep(d).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_enrollment_credential_and_only_once() {
        assert_eq!(after_refusal(true, false, false), AfterRefusal::Reenroll);
        assert_eq!(after_refusal(true, true, false), AfterRefusal::Stop);
        assert_eq!(after_refusal(false, false, false), AfterRefusal::Stop);
        assert_eq!(after_refusal(false, true, false), AfterRefusal::Stop);
        assert_eq!(
            after_refusal(true, false, true),
            AfterRefusal::Stop,
            "a removed instance does not come back by itself"
        );
    }

    #[test]
    fn a_refused_token_is_moved_aside_and_never_read_again()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("token");
        std::fs::write(&file, "dead\n")?;
        let to = set_aside(&file)?;
        assert_eq!(to, dir.path().join("token.refused"));
        assert!(!file.exists());
        assert_eq!(std::fs::read_to_string(&to)?, "dead\n");
        // Again (nothing left to move): still fine.
        assert_eq!(set_aside(&file)?, to);
        Ok(())
    }
}
