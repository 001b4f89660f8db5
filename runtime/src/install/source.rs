//! Listing the `files` sources in the unpacked revision, without ever following a symlink: a symlink is listed as a
//! symlink (re-created with the same target text), and a source path that passes through one is refused.

use super::error::InstallError;
use super::plan::{MappingListing, SourceEntry, SourceKind};
use crate::appspec::FileMapping;
use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// Check a destination: absolute, no `.`/`..` components, UTF-8 (the cleanup list stores paths as JSON strings).
pub fn check_destination(index: usize, destination: &Path) -> Result<(), InstallError> {
    let normal = destination.is_absolute()
        && destination
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if !normal {
        return Err(InstallError::InvalidDestination {
            index,
            path: destination.to_owned(),
        });
    }
    if destination.to_str().is_none() {
        return Err(InstallError::NonUtf8Path {
            path: destination.to_owned(),
        });
    }
    Ok(())
}

/// The components of a `files[].source`, relative to the revision root (`/` or empty: the root itself).
pub fn source_components(index: usize, value: &str) -> Result<Vec<String>, InstallError> {
    let invalid = |reason| InstallError::InvalidSource {
        index,
        value: value.to_owned(),
        reason,
    };
    let mut parts = Vec::new();
    for component in Path::new(value.trim_start_matches('/')).components() {
        match component {
            Component::Normal(part) => {
                parts.push(
                    part.to_str()
                        .ok_or_else(|| invalid("expected UTF-8"))?
                        .to_owned(),
                );
            }
            Component::CurDir => {}
            Component::ParentDir => return Err(invalid("`..` would leave the revision")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(invalid("expected a path inside the revision"));
            }
        }
    }
    Ok(parts)
}

/// List `mapping`'s source under `revision`: a directory's contents recursively (pre-order, sorted by name), or
/// the single file/symlink under its base name.
pub fn list_mapping(
    index: usize,
    mapping: &FileMapping,
    revision: &Path,
) -> Result<MappingListing, InstallError> {
    check_destination(index, &mapping.destination)?;
    let parts = source_components(index, &mapping.source)?;
    let mut path = revision.to_owned();
    let last = parts.len();
    let mut meta = symlink_meta(&path)?.ok_or_else(|| missing(index, mapping, &path))?;
    for (i, part) in parts.iter().enumerate() {
        path.push(part);
        meta = symlink_meta(&path)?.ok_or_else(|| missing(index, mapping, &path))?;
        if meta.file_type().is_symlink() && i + 1 < last {
            return Err(InstallError::SourceThroughSymlink {
                index,
                value: mapping.source.clone(),
                path: path.clone(),
            });
        }
    }
    let mut entries = Vec::new();
    if meta.is_dir() {
        walk(&path, &PathBuf::new(), &mut entries)?;
    } else {
        let name = parts.last().map(PathBuf::from).unwrap_or_default();
        let kind = kind_of(&path, &meta)?;
        entries.push(SourceEntry {
            rel: name,
            path,
            kind,
        });
    }
    for entry in &entries {
        let dest = mapping.destination.join(&entry.rel);
        if dest.to_str().is_none() {
            return Err(InstallError::NonUtf8Path { path: dest });
        }
    }
    Ok(MappingListing {
        destination: mapping.destination.clone(),
        entries,
    })
}

fn missing(index: usize, mapping: &FileMapping, path: &Path) -> InstallError {
    InstallError::SourceMissing {
        index,
        value: mapping.source.clone(),
        path: path.to_owned(),
    }
}

fn symlink_meta(path: &Path) -> Result<Option<fs::Metadata>, InstallError> {
    match fs::symlink_metadata(path) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(InstallError::ReadSource {
            path: path.to_owned(),
            source,
        }),
    }
}

fn kind_of(path: &Path, meta: &fs::Metadata) -> Result<SourceKind, InstallError> {
    let ft = meta.file_type();
    let mode = meta.permissions().mode() & 0o7777;
    if ft.is_file() {
        Ok(SourceKind::File { mode })
    } else if ft.is_dir() {
        Ok(SourceKind::Dir { mode })
    } else if ft.is_symlink() {
        let target = fs::read_link(path).map_err(|source| InstallError::ReadSource {
            path: path.to_owned(),
            source,
        })?;
        Ok(SourceKind::Symlink { target })
    } else {
        let kind = if ft.is_fifo() {
            "fifo"
        } else if ft.is_socket() {
            "socket"
        } else {
            "device"
        };
        Err(InstallError::UnsupportedSourceType {
            path: path.to_owned(),
            kind,
        })
    }
}

/// Pre-order walk of `dir` (a real directory, not a symlink), names sorted for a deterministic plan.
fn walk(dir: &Path, rel: &Path, out: &mut Vec<SourceEntry>) -> Result<(), InstallError> {
    let read_err = |source| InstallError::ReadSource {
        path: dir.to_owned(),
        source,
    };
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(read_err)? {
        names.push(entry.map_err(read_err)?.file_name());
    }
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let meta = symlink_meta(&path)?.ok_or_else(|| InstallError::ReadSource {
            path: path.clone(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "vanished while listing"),
        })?;
        let kind = kind_of(&path, &meta)?;
        let child_rel = rel.join(&name);
        let is_dir = matches!(kind, SourceKind::Dir { .. });
        out.push(SourceEntry {
            rel: child_rel.clone(),
            path: path.clone(),
            kind,
        });
        if is_dir {
            walk(&path, &child_rel, out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_stay_inside_the_revision() -> Result<(), InstallError> {
        assert_eq!(source_components(0, "/")?, Vec::<String>::new());
        assert_eq!(source_components(0, "")?, Vec::<String>::new());
        assert_eq!(
            source_components(0, "/conf/./app.ini")?,
            ["conf", "app.ini"]
        );
        assert!(matches!(
            source_components(3, "a/../../x"),
            Err(InstallError::InvalidSource { index: 3, .. })
        ));
        Ok(())
    }

    #[test]
    fn destinations_must_be_absolute_and_normal() {
        assert!(check_destination(0, Path::new("/srv/app")).is_ok());
        for bad in ["srv/app", "/srv/../etc", "../srv"] {
            assert!(
                matches!(
                    check_destination(1, Path::new(bad)),
                    Err(InstallError::InvalidDestination { index: 1, .. })
                ),
                "{bad} accepted"
            );
        }
    }
}
