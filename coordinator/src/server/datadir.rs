//! The coordinator's data dir is private: it holds the database (every deployment's logs, hashed tokens), the
//! stored bundles of every application and the token files. Created 0700; an existing dir that others may enter or
//! read is fixed (its group and other permissions removed) with a warning naming the old mode, rather than
//! refused: an upgraded coordinator whose dir an older version made 0755 must start, and nobody else has any
//! business in it. Token files in it are written 0600 on their own ([`rollcage_secretfile`]).

use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::Path;

/// The data dir's mode.
pub const DATA_DIR_MODE: u32 = 0o700;

/// Create `data` private, or make an existing one private. Returns the old mode when it had to be fixed.
pub fn ensure_private(data: &Path) -> std::io::Result<Option<u32>> {
    if let Some(parent) = data.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::DirBuilder::new().mode(DATA_DIR_MODE).create(data) {
        Ok(()) => {
            std::fs::set_permissions(data, std::fs::Permissions::from_mode(DATA_DIR_MODE))?;
            return Ok(None);
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let mode = std::fs::metadata(data)?.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(None);
    }
    std::fs::set_permissions(data, std::fs::Permissions::from_mode(mode & 0o7700))?;
    tracing::warn!(path = %data.display(), old_mode = format!("{mode:04o}"),
        "the data dir was open to other users (database, bundles, token files); made it 0700");
    Ok(Some(mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_private_and_an_open_one_is_fixed() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let mode = |p: &Path| std::fs::metadata(p).map(|m| m.permissions().mode() & 0o7777);
        let data = tmp.path().join("a/data");
        assert_eq!(ensure_private(&data)?, None);
        assert_eq!(mode(&data)?, 0o700);
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755))?;
        assert_eq!(ensure_private(&data)?, Some(0o755));
        assert_eq!(mode(&data)?, 0o700);
        assert_eq!(ensure_private(&data)?, None);
        Ok(())
    }
}
