//! `push`: a directory is packed as tar.gz in memory (paths relative to it, symlinks kept as links); a file is
//! sent as it is (the agent detects tar, tar.gz or zip by content).

use anyhow::Context;
use std::path::Path;

/// The bytes to upload for `path`.
pub fn archive_bytes(path: &Path) -> anyhow::Result<Vec<u8>> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if meta.is_file() {
        return std::fs::read(path).with_context(|| format!("reading archive {}", path.display()));
    }
    if !meta.is_dir() {
        anyhow::bail!(
            "{} is neither a directory nor an archive file",
            path.display()
        );
    }
    let enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(enc);
    tar.follow_symlinks(false);
    tar.append_dir_all(".", path)
        .with_context(|| format!("packing directory {}", path.display()))?;
    let enc = tar.into_inner().context("finishing the tar stream")?;
    enc.finish().context("finishing the gzip stream")
}

/// Sign what `push` uploads for `path` (`bytes`, as [`archive_bytes`] made them) with the private key `key`. An
/// archive file is signed where it is; a packed directory through a temporary file (so an encrypted key can be
/// used through `ssh-keygen`, which signs files).
pub fn sign(key: &Path, path: &Path, bytes: &[u8]) -> anyhow::Result<String> {
    if std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
        return Ok(rollcage_signing::sign::sign_file(key, path)?);
    }
    let dir =
        tempfile::tempdir().context("creating a temporary dir to sign the packed directory")?;
    let archive = dir.path().join("revision.tar.gz");
    std::fs::write(&archive, bytes).with_context(|| format!("writing {}", archive.display()))?;
    Ok(rollcage_signing::sign::sign_file(key, &archive)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn a_directory_is_packed_relative_to_itself() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("appspec.yml"), "version: 0.0\nos: linux\n")?;
        std::fs::create_dir(dir.path().join("scripts"))?;
        std::fs::write(dir.path().join("scripts/start.sh"), "#!/bin/sh\n")?;
        let bytes = archive_bytes(dir.path())?;
        let mut names = Vec::new();
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
        for e in ar.entries()? {
            let mut e = e?;
            names.push(e.path()?.to_string_lossy().into_owned());
            let mut s = String::new();
            let _ = e.read_to_string(&mut s);
        }
        assert!(
            names
                .iter()
                .any(|n| n.trim_start_matches("./") == "appspec.yml"),
            "{names:?}"
        );
        assert!(
            names
                .iter()
                .any(|n| n.trim_start_matches("./") == "scripts/start.sh"),
            "{names:?}"
        );
        assert!(names.iter().all(|n| !n.starts_with('/')), "{names:?}");
        Ok(())
    }
}
