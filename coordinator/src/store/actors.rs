//! Who acted on a deployment: who created, stopped, rolled back and continued it (token names, or
//! [`rollcage_proto::access::SYSTEM_ACTOR`] for automatic rollbacks), kept in the `deployments` row.

use super::{Conn, OptionalExt, args};
use super::{Result, sql};
use rollcage_proto::access::DeploymentActors;

/// What was done to a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// It was created.
    Created,
    /// It was stopped (the last stop counts).
    Stopped,
    /// It was rolled back.
    RolledBack,
    /// It was let switch traffic.
    Continued,
}

impl Act {
    fn column(self) -> &'static str {
        match self {
            Act::Created => "created_by",
            Act::Stopped => "stopped_by",
            Act::RolledBack => "rolled_back_by",
            Act::Continued => "continued_by",
        }
    }
}

/// Record that `who` did `act` to deployment `id`.
pub fn set(c: &Conn<'_>, id: &str, act: Act, who: &str) -> Result<()> {
    // The column name comes from the closed set above, never from a caller's text.
    c.execute(
        &format!("UPDATE deployments SET {} = ?2 WHERE id = ?1", act.column()),
        args![id, who],
    )
    .map_err(sql)?;
    Ok(())
}

/// Who acted on deployment `id` (all `None` for an unknown one).
pub fn of(c: &Conn<'_>, id: &str) -> Result<DeploymentActors> {
    let r = c
        .prepare_cached(
            "SELECT created_by, stopped_by, rolled_back_by, continued_by FROM deployments WHERE id = ?1",
        )
        .map_err(sql)?
        .query_row([id], |r| {
            Ok(DeploymentActors {
                created_by: r.get(0)?,
                stopped_by: r.get(1)?,
                rolled_back_by: r.get(2)?,
                continued_by: r.get(3)?,
            })
        })
        .optional()
        .map_err(sql)?;
    Ok(r.unwrap_or_default())
}
