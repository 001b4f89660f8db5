//! Free space on the agent's disk, checked before a revision is written: the archive before it is downloaded (its
//! size, from the coordinator), and each entry before it is unpacked (the archive's declared sizes, summed), so a
//! revision that cannot fit fails at once, naming what it needs and what is free, instead of filling the disk
//! half-way (when everything else on the host would start failing too).

use super::error::PackageError;
use std::path::Path;

/// Bytes available to the agent (unprivileged `f_bavail`, not `f_bfree`: what a write can actually use) on the
/// filesystem holding `path`.
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    let st = rustix::fs::statvfs(path)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// `bytes` for people: `8.0 MiB (8388608 bytes)`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {} ({bytes} bytes)", UNITS[unit])
    }
}

/// Fail with [`PackageError::NoSpace`] unless `needed` bytes are free on the filesystem of `path`; `what` says what
/// needs them. A filesystem that cannot be asked is not a reason to fail: the write then fails on its own.
pub fn check(path: &Path, needed: u64, what: &str) -> Result<(), PackageError> {
    match free_bytes(path) {
        Ok(free) if needed > free => Err(PackageError::NoSpace {
            path: path.to_owned(),
            what: what.to_owned(),
            needed,
            free,
        }),
        Ok(_) => Ok(()),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot tell the free space");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_for_people_with_the_exact_count() {
        assert_eq!(human(0), "0 bytes");
        assert_eq!(human(1023), "1023 bytes");
        assert_eq!(human(8 << 20), "8.0 MiB (8388608 bytes)");
        assert_eq!(human(1536), "1.5 KiB (1536 bytes)");
    }

    #[test]
    fn a_need_beyond_the_free_space_is_refused_naming_both() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let free = free_bytes(dir.path())?;
        assert!(check(dir.path(), 1, "one byte").is_ok());
        let Err(e) = check(dir.path(), u64::MAX, "the universe") else {
            panic!("accepted")
        };
        let text = e.to_string();
        assert!(text.contains("the universe needs"), "{text}");
        assert!(text.contains(&format!("({} bytes)", u64::MAX)), "{text}");
        assert!(text.contains("free"), "{text}");
        assert!(free > 0);
        Ok(())
    }
}
