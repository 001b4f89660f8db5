//! Retention of deployment dirs: keep the newest few per group (by mtime), never the ones still needed.

use super::error::PackageError;
use crate::layout::GroupLayout;
use std::time::SystemTime;

/// How many deployment dirs a group keeps by default, current one included (CodeDeploy's `max_revisions`).
pub const DEFAULT_MAX_REVISIONS: usize = 5;

/// Choose which deployment ids to remove: `dirs` are `(id, mtime)`; the ids in `keep` always stay and count toward
/// `max_revisions`; the newest of the others fill the remaining places. Pure.
pub(crate) fn select_removals(
    mut dirs: Vec<(String, SystemTime)>,
    max_revisions: usize,
    keep: &[&str],
) -> Vec<String> {
    // Newest first; ties broken by id so the choice is deterministic.
    dirs.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
    let kept_present = dirs
        .iter()
        .filter(|(id, _)| keep.contains(&id.as_str()))
        .count();
    let mut room = max_revisions.saturating_sub(kept_present);
    let mut remove = Vec::new();
    for (id, _) in dirs {
        if keep.contains(&id.as_str()) {
            continue;
        }
        if room > 0 {
            room -= 1;
        } else {
            remove.push(id);
        }
    }
    remove
}

/// Keep the newest `max_revisions` deployment dirs of the group, never deleting those in `keep`. Returns the ids
/// removed.
pub fn prune(
    group: &GroupLayout,
    max_revisions: usize,
    keep: &[&str],
) -> Result<Vec<String>, PackageError> {
    let dir = group.dir();
    let entries = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(PackageError::io("list", dir, e)),
    };
    let mut dirs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| PackageError::io("list", dir, e))?;
        let name = entry.file_name();
        let Some(id) = name.to_str().and_then(|n| n.strip_prefix("deploy-")) else {
            continue;
        };
        // Only real directories: a symlink named deploy-* is not ours to follow or delete through.
        let meta = std::fs::symlink_metadata(entry.path())
            .map_err(|e| PackageError::io("stat", entry.path(), e))?;
        if !meta.is_dir() {
            continue;
        }
        let mtime = meta
            .modified()
            .map_err(|e| PackageError::io("stat", entry.path(), e))?;
        dirs.push((id.to_owned(), mtime));
    }
    let remove = select_removals(dirs, max_revisions, keep);
    for id in &remove {
        let path = dir.join(format!("deploy-{id}"));
        tracing::info!(deployment = %id, path = %path.display(), "removing old deployment dir");
        std::fs::remove_dir_all(&path).map_err(|e| PackageError::io("remove", &path, e))?;
    }
    Ok(remove)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(id: &str, secs: u64) -> (String, SystemTime) {
        (
            id.to_owned(),
            SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
        )
    }

    #[test]
    fn oldest_go_first_and_kept_ids_count_toward_the_limit() {
        let dirs = vec![at("a", 1), at("b", 2), at("c", 3), at("d", 4), at("e", 5)];
        assert_eq!(
            select_removals(dirs.clone(), 3, &[]),
            vec!["b".to_owned(), "a".to_owned()]
        );
        // `a` is the last successful one: it stays, and only two others fit.
        assert_eq!(
            select_removals(dirs.clone(), 3, &["a", "e"]),
            vec!["c".to_owned(), "b".to_owned()]
        );
        assert!(select_removals(dirs, 5, &[]).is_empty());
    }
}
