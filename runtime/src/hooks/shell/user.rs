//! The identity a shell hook runs as: the agent's own, or the AppSpec's `runas` user.
//!
//! Everything is looked up **before** the fork: the user database (NSS) is not async-signal-safe, so the child only
//! makes the three raw system calls `setgroups`, `setgid`, `setuid` with values resolved here. CodeDeploy runs
//! `su <user> -c <script>`, a shell string built from data; we never do.

use nix::unistd::{Gid, Uid, User, geteuid, getgrouplist};
use std::ffi::CString;
use std::path::PathBuf;
use thiserror::Error;

/// Why the hook's identity could not be prepared.
#[derive(Debug, Error)]
pub enum RunAsError {
    /// `runas` names no user of this host.
    #[error("runas user `{user}` does not exist on this host")]
    UnknownUser {
        /// The name from the AppSpec.
        user: String,
    },
    /// The user database could not be read.
    #[error("cannot look up user `{user}`: {source}")]
    Lookup {
        /// The name (or `uid N`) being looked up.
        user: String,
        /// The error of `getpwnam_r`/`getpwuid_r`.
        source: nix::Error,
    },
    /// The supplementary groups of the user could not be listed.
    #[error("cannot list the groups of user `{user}`: {source}")]
    Groups {
        /// The user name.
        user: String,
        /// The error of `getgrouplist`.
        source: nix::Error,
    },
    /// Only root can run hooks as another user.
    #[error("cannot run the hook as `{user}`: the agent runs as uid {uid}, not root")]
    NotRoot {
        /// The `runas` user.
        user: String,
        /// The agent's effective uid.
        uid: u32,
    },
}

/// The identity of one hook run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// User name (for logs).
    pub name: String,
    /// The user's home directory, exported as `HOME`.
    pub home: PathBuf,
    /// The credentials to switch to in the child; `None` when the hook runs as the agent's own user.
    pub switch: Option<Credentials>,
}

/// The credentials a child switches to before `exec`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Target uid.
    pub uid: Uid,
    /// Target primary gid.
    pub gid: Gid,
    /// Supplementary groups (what `initgroups` would set), primary group included.
    pub groups: Vec<Gid>,
}

/// Resolve the identity of a hook: `runas` if given, else the agent's effective user.
pub fn resolve(runas: Option<&str>) -> Result<Identity, RunAsError> {
    let euid = geteuid();
    let Some(name) = runas else {
        return Ok(own_identity(euid));
    };
    let unknown = || RunAsError::UnknownUser {
        user: name.to_owned(),
    };
    // A name with a NUL cannot be in the user database; nix would fail to build its C string.
    let cname = CString::new(name).map_err(|_| unknown())?;
    let user = User::from_name(name)
        .map_err(|source| RunAsError::Lookup {
            user: name.to_owned(),
            source,
        })?
        .ok_or_else(unknown)?;
    if user.uid == euid {
        return Ok(Identity {
            name: user.name,
            home: user.dir,
            switch: None,
        });
    }
    if !euid.is_root() {
        return Err(RunAsError::NotRoot {
            user: name.to_owned(),
            uid: euid.as_raw(),
        });
    }
    let groups = getgrouplist(&cname, user.gid).map_err(|source| RunAsError::Groups {
        user: name.to_owned(),
        source,
    })?;
    Ok(Identity {
        name: user.name,
        home: user.dir,
        switch: Some(Credentials {
            uid: user.uid,
            gid: user.gid,
            groups,
        }),
    })
}

/// The agent's own user; `HOME=/` when it has no passwd entry (e.g. an arbitrary uid in a container).
fn own_identity(euid: Uid) -> Identity {
    match User::from_uid(euid) {
        Ok(Some(user)) => Identity {
            name: user.name,
            home: user.dir,
            switch: None,
        },
        _ => Identity {
            name: format!("uid {euid}"),
            home: PathBuf::from("/"),
            switch: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_users_are_refused() {
        let err = resolve(Some("no-such-user-rollcage-xyz"));
        assert!(
            matches!(err, Err(RunAsError::UnknownUser { ref user }) if user == "no-such-user-rollcage-xyz")
        );
        assert!(matches!(
            resolve(Some("a\0b")),
            Err(RunAsError::UnknownUser { .. })
        ));
    }

    #[test]
    fn the_agent_user_needs_no_switch() -> Result<(), RunAsError> {
        let me = resolve(None)?;
        assert_eq!(me.switch, None);
        let again = resolve(Some(&me.name))?;
        assert_eq!(again.switch, None);
        Ok(())
    }
}
