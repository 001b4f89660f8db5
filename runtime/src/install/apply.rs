//! Executing a copy plan and the permission assignments on the file system.
//!
//! Every object is recorded in the cleanup list (and the list fsynced) before it is created. Files and symlinks
//! are staged beside their target and renamed into place, so no half-written file is ever visible; a new object
//! is renamed with `RENAME_NOREPLACE`, so one that appeared since planning is never clobbered.

use super::InstallReport;
use super::cleanup::{CleanupEntry, CleanupWriter, staging_path};
use super::error::InstallError;
use super::perms::{Assignment, Created, CreatedKind};
use super::plan::{CopyPlan, Instruction};
use super::tools::{self, ResolvedIds, SelinuxTool, Tools};
use crate::appspec::Permission;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, RenameFlags, renameat2};
use nix::unistd::fchownat;
use std::ffi::OsStr;
use std::fs::{self, FileTimes, OpenOptions, Permissions};
use std::io::ErrorKind;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Instructions whose cleanup entries are written (and fsynced once) before they run: one fsync per object would
/// make a large tree crawl on a real disk, and a batch keeps the write-ahead guarantee (every object of the batch is
/// listed durably before any of them is created).
const WRITE_AHEAD_BATCH: usize = 256;

/// The objects `plan` creates, in creation order.
pub fn created_objects(plan: &CopyPlan) -> Vec<Created> {
    plan.instructions
        .iter()
        .filter_map(|i| match i {
            Instruction::Mkdir { path, .. } => Some(Created {
                path: path.clone(),
                kind: CreatedKind::Dir,
            }),
            Instruction::CopyFile { to, .. } => Some(Created {
                path: to.clone(),
                kind: CreatedKind::File,
            }),
            Instruction::CopySymlink { to, .. } => Some(Created {
                path: to.clone(),
                kind: CreatedKind::Symlink,
            }),
            Instruction::Retain { .. } => None,
        })
        .collect()
}

/// Run the copy plan.
pub fn copy(
    plan: &CopyPlan,
    list: &mut CleanupWriter,
    report: &mut InstallReport,
) -> Result<(), InstallError> {
    for batch in plan.instructions.chunks(WRITE_AHEAD_BATCH) {
        for instruction in batch {
            if let Some(entry) = cleanup_entry(instruction) {
                list.append(&entry)?;
            }
        }
        list.sync()?;
        for instruction in batch {
            execute(instruction, report)?;
        }
    }
    Ok(())
}

fn cleanup_entry(instruction: &Instruction) -> Option<CleanupEntry> {
    // Paths were checked to be UTF-8 when the sources were listed.
    let text = |p: &Path| p.to_string_lossy().into_owned();
    match instruction {
        Instruction::Mkdir { path, .. } => Some(CleanupEntry::Dir { path: text(path) }),
        Instruction::CopyFile { to, .. } => Some(CleanupEntry::File { path: text(to) }),
        Instruction::CopySymlink { to, .. } => Some(CleanupEntry::Symlink { path: text(to) }),
        Instruction::Retain { .. } => None,
    }
}

fn execute(instruction: &Instruction, report: &mut InstallReport) -> Result<(), InstallError> {
    match instruction {
        Instruction::Mkdir { path, mode } => {
            let err = |source| InstallError::Create {
                path: path.clone(),
                source,
            };
            fs::create_dir(path).map_err(err)?;
            // Set explicitly: mkdir's mode is filtered by the umask.
            fs::set_permissions(path, Permissions::from_mode(*mode)).map_err(err)?;
            report.dirs_created += 1;
        }
        Instruction::CopyFile {
            from,
            to,
            mode,
            replace,
        } => {
            copy_file(from, to, *mode, *replace)?;
            report.copied += 1;
        }
        Instruction::CopySymlink {
            target,
            to,
            replace,
            ..
        } => {
            let staged = staging_path(to);
            let err = |source| InstallError::Create {
                path: to.clone(),
                source,
            };
            match std::os::unix::fs::symlink(target, &staged) {
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    // A stale staging object from a crashed install; ours by its name.
                    fs::remove_file(&staged).map_err(err)?;
                    std::os::unix::fs::symlink(target, &staged).map_err(err)?;
                }
                other => other.map_err(err)?,
            }
            commit(&staged, to, *replace)?;
            report.copied += 1;
        }
        Instruction::Retain { path, .. } => {
            tracing::debug!(path = %path.display(), "existing file retained");
            report.retained += 1;
        }
    }
    Ok(())
}

/// Copy through a staging file renamed into place: the target is never seen half-written. The data is not fsynced
/// per file (neither does CodeDeploy; it would multiply install time on real disks): after a crash the cleanup list
/// names the file, and the next deployment removes and re-copies it.
fn copy_file(from: &Path, to: &Path, mode: u32, replace: bool) -> Result<(), InstallError> {
    let read_err = |source| InstallError::ReadSource {
        path: from.to_owned(),
        source,
    };
    // O_NOFOLLOW: the revision was listed without following symlinks; never follow one swapped in since.
    let mut src = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(from)
        .map_err(read_err)?;
    let meta = src.metadata().map_err(read_err)?;
    if !meta.is_file() {
        return Err(InstallError::UnsupportedSourceType {
            path: from.to_owned(),
            kind: "non-regular file",
        });
    }
    let staged = staging_path(to);
    let err = |source| InstallError::Create {
        path: to.to_owned(),
        source,
    };
    let open = || {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&staged)
    };
    let mut dst = match open() {
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            fs::remove_file(&staged).map_err(err)?;
            open().map_err(err)?
        }
        other => other.map_err(err)?,
    };
    let written = (|| -> std::io::Result<()> {
        std::io::copy(&mut src, &mut dst)?;
        dst.set_permissions(Permissions::from_mode(mode))?;
        if let Ok(mtime) = meta.modified() {
            dst.set_times(FileTimes::new().set_modified(mtime))?;
        }
        Ok(())
    })();
    drop(dst);
    if let Err(e) = written {
        let _ = fs::remove_file(&staged);
        return Err(err(e));
    }
    commit(&staged, to, replace)
}

/// Rename the staged object onto `to`; without `replace`, never over something that appeared since planning.
fn commit(staged: &Path, to: &Path, replace: bool) -> Result<(), InstallError> {
    let result = if replace {
        fs::rename(staged, to)
    } else {
        match renameat2(None, staged, None, to, RenameFlags::RENAME_NOREPLACE) {
            Ok(()) => Ok(()),
            // File systems without RENAME_NOREPLACE: a hard link also refuses an existing target.
            Err(Errno::EINVAL | Errno::ENOSYS) => {
                fs::hard_link(staged, to).and_then(|()| fs::remove_file(staged))
            }
            Err(Errno::EEXIST) => {
                let _ = fs::remove_file(staged);
                return Err(InstallError::FileExists {
                    path: to.to_owned(),
                });
            }
            Err(e) => Err(std::io::Error::from(e)),
        }
    };
    result.map_err(|source| {
        let _ = fs::remove_file(staged);
        InstallError::Create {
            path: to.to_owned(),
            source,
        }
    })
}

/// Apply each assignment in the order chmod → ACL → SELinux context → chown.
pub fn permissions(
    assignments: &[Assignment],
    perms: &[Permission],
    ids: &[ResolvedIds],
    tools: &Tools,
    list: &mut CleanupWriter,
) -> Result<(), InstallError> {
    for a in assignments {
        let (Some(perm), Some(id)) = (perms.get(a.entry), ids.get(a.entry)) else {
            continue;
        };
        let path = a.path.as_path();
        let expected = if a.is_dir { "directory" } else { "file" };
        // The object must still be what we created: chmod and setfacl would follow a symlink swapped in.
        let meta = fs::symlink_metadata(path).map_err(|source| InstallError::SetPermission {
            path: path.to_owned(),
            what: "inspect",
            source,
        })?;
        if meta.is_dir() != a.is_dir || meta.file_type().is_symlink() {
            return Err(InstallError::ObjectReplaced {
                path: path.to_owned(),
                expected,
            });
        }
        if let Some(mode) = perm.mode {
            chmod(path, mode.0)?;
        }
        if let (Some(acls), Some(setfacl)) = (&perm.acls, &tools.setfacl) {
            let mode = fs::symlink_metadata(path)
                .map_err(|source| InstallError::SetPermission {
                    path: path.to_owned(),
                    what: "inspect",
                    source,
                })?
                .permissions()
                .mode();
            let spec = format!(
                "--set={}",
                tools::acl_spec(acls, &id.acl_ids, mode, a.is_dir)
            );
            tools::run(
                setfacl,
                &[OsStr::new(&spec), OsStr::new("--"), path.as_os_str()],
                path,
            )?;
        }
        if let (Some(ctx), Some(tool)) = (&perm.context, &tools.selinux) {
            match tool {
                SelinuxTool::Semanage {
                    semanage,
                    restorecon,
                } => {
                    list.append(&CleanupEntry::SelinuxFcontext {
                        path: path.to_string_lossy().into_owned(),
                    })?;
                    list.sync()?;
                    let args = tools::semanage_args(ctx, path);
                    tools::run(
                        semanage,
                        &args.iter().map(|a| a.as_os_str()).collect::<Vec<_>>(),
                        path,
                    )?;
                    tools::run(restorecon, &[OsStr::new("--"), path.as_os_str()], path)?;
                }
                SelinuxTool::Chcon(chcon) => {
                    let args = tools::chcon_args(ctx, path);
                    tools::run(
                        chcon,
                        &args.iter().map(|a| a.as_os_str()).collect::<Vec<_>>(),
                        path,
                    )?;
                }
            }
        }
        if id.owner.is_some() || id.group.is_some() {
            fchownat(None, path, id.owner, id.group, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(
                |e| InstallError::SetPermission {
                    path: path.to_owned(),
                    what: "chown",
                    source: e.into(),
                },
            )?;
            // chown clears setuid/setgid on files (Linux does so for root too); the AppSpec asked for them.
            if let Some(mode) = perm.mode.filter(|m| m.0 & 0o6000 != 0 && !a.is_dir) {
                chmod(path, mode.0)?;
            }
        }
    }
    Ok(())
}

fn chmod(path: &Path, mode: u32) -> Result<(), InstallError> {
    fs::set_permissions(path, Permissions::from_mode(mode)).map_err(|source| {
        InstallError::SetPermission {
            path: path.to_owned(),
            what: "chmod",
            source,
        }
    })
}
