//! The copy planner: a pure function from (listed `files` sources, what exists at the destination after cleanup,
//! `file_exists_behavior`) to the ordered instructions Install executes. It does no I/O itself: the state of the
//! destination comes from a lookup the caller passes (the live file system in [`super::install`], a map in tests).
//!
//! Rules (CodeDeploy's, made safe):
//! - each missing ancestor of a destination is created (and later recorded for cleanup); an existing ancestor may be
//!   a symlink to a directory (the AppSpec author chose that path);
//! - inside the copied tree an existing symlink is never followed where a directory is needed: that is a clash;
//! - a file (or symlink) target that exists is handled by the behaviour: DISALLOW → error, OVERWRITE → replace,
//!   RETAIN → keep, no copy, not recorded;
//! - two sources to one destination, a file where a directory is (or is planned) and the reverse are errors.

use super::error::InstallError;
use crate::appspec::FileExistsBehavior;
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

/// Mode of directories Install creates that have no counterpart in the revision (destinations and their
/// ancestors): what `mkdir -p` gives under the usual umask.
pub const DEFAULT_DIR_MODE: u32 = 0o755;

/// Mode bits kept from the revision: permission bits and sticky, never setuid/setgid (only a `permissions`
/// entry may set those).
pub const KEPT_MODE_BITS: u32 = 0o1777;

/// What one revision entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceKind {
    /// A regular file with its mode.
    File {
        /// Mode bits as in the revision.
        mode: u32,
    },
    /// A directory with its mode.
    Dir {
        /// Mode bits as in the revision.
        mode: u32,
    },
    /// A symlink with its target text.
    Symlink {
        /// The target, as stored.
        target: PathBuf,
    },
}

/// One object of a `files` source, in pre-order (a directory before its contents).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceEntry {
    /// Path relative to the mapping's destination directory.
    pub rel: PathBuf,
    /// Path in the revision.
    pub path: PathBuf,
    /// What it is.
    pub kind: SourceKind,
}

/// One `files` entry, listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingListing {
    /// The destination directory (absolute).
    pub destination: PathBuf,
    /// Its objects, directories before their contents.
    pub entries: Vec<SourceEntry>,
}

/// What exists at a destination path (without following a final symlink).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Nothing.
    Missing,
    /// A directory.
    Dir,
    /// A regular file.
    File,
    /// A symlink; `to_dir` when it resolves to a directory.
    Symlink {
        /// Resolves to a directory.
        to_dir: bool,
    },
    /// A fifo, socket or device.
    Other,
}

/// One step of the copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    /// Create a directory (recorded for cleanup).
    Mkdir {
        /// The directory.
        path: PathBuf,
        /// Its mode.
        mode: u32,
    },
    /// Copy a regular file (recorded for cleanup).
    CopyFile {
        /// Source in the revision.
        from: PathBuf,
        /// Destination file.
        to: PathBuf,
        /// Mode to give it.
        mode: u32,
        /// Something exists there and is replaced (OVERWRITE).
        replace: bool,
    },
    /// Re-create a symlink with the same target text (recorded for cleanup).
    CopySymlink {
        /// Source in the revision.
        from: PathBuf,
        /// The target text.
        target: PathBuf,
        /// Destination.
        to: PathBuf,
        /// Something exists there and is replaced (OVERWRITE).
        replace: bool,
    },
    /// Keep an existing file (RETAIN); not recorded.
    Retain {
        /// Source in the revision.
        from: PathBuf,
        /// The kept file.
        path: PathBuf,
    },
}

/// What a path holds once the plan has run, as far as the planner knows.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Planned {
    /// A directory; `created` when this plan makes it.
    Dir { created: bool },
    /// A file or symlink copied from `from`, or retained instead of copying it.
    NotDir { from: PathBuf },
}

/// The result of planning.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyPlan {
    /// Instructions in execution order (parents before children).
    pub instructions: Vec<Instruction>,
    /// Every directory the plan relies on (existing or created); permission objects are matched against it.
    pub dirs: std::collections::HashSet<PathBuf>,
}

/// Plan the copies of `listings` (in `files` order).
pub fn plan_copies(
    listings: &[MappingListing],
    behavior: FileExistsBehavior,
    mut lookup: impl FnMut(&Path) -> Result<Existing, InstallError>,
) -> Result<CopyPlan, InstallError> {
    let mut planner = Planner {
        planned: HashMap::new(),
        plan: CopyPlan::default(),
        lookup: &mut lookup,
    };
    for listing in listings {
        // The root exists; listed so that a `permissions` object of `/` matches like any directory.
        planner.plan.dirs.insert(PathBuf::from("/"));
        planner.ensure_destination(&listing.destination)?;
        for entry in &listing.entries {
            let target = listing.destination.join(&entry.rel);
            match &entry.kind {
                SourceKind::Dir { mode } => {
                    planner.ensure_dir(&target, mode & KEPT_MODE_BITS, false)?;
                }
                SourceKind::File { mode } => {
                    planner.place(entry, &target, behavior, |replace| Instruction::CopyFile {
                        from: entry.path.clone(),
                        to: target.clone(),
                        mode: mode & KEPT_MODE_BITS,
                        replace,
                    })?;
                }
                SourceKind::Symlink { target: link } => {
                    planner.place(entry, &target, behavior, |replace| {
                        Instruction::CopySymlink {
                            from: entry.path.clone(),
                            target: link.clone(),
                            to: target.clone(),
                            replace,
                        }
                    })?;
                }
            }
        }
    }
    Ok(planner.plan)
}

/// Refuse any copy into `protected` (the agent's root: its state, cleanup lists and revisions must never be
/// overwritten by an AppSpec). Compared by path prefix, before anything is changed.
pub fn check_protected(listings: &[MappingListing], protected: &Path) -> Result<(), InstallError> {
    for listing in listings {
        let targets = std::iter::once(listing.destination.clone()).chain(
            listing
                .entries
                .iter()
                .map(|e| listing.destination.join(&e.rel)),
        );
        for target in targets {
            if target.starts_with(protected) {
                return Err(InstallError::DestinationInAgentRoot {
                    path: target,
                    root: protected.to_owned(),
                });
            }
        }
    }
    Ok(())
}

struct Planner<'a, L> {
    planned: HashMap<PathBuf, Planned>,
    plan: CopyPlan,
    lookup: &'a mut L,
}

impl<L: FnMut(&Path) -> Result<Existing, InstallError>> Planner<'_, L> {
    /// What exists at `path`; inside a directory this plan creates nothing can, so the file system is not asked
    /// (one `lstat` saved per copied object).
    fn existing(&mut self, path: &Path) -> Result<Existing, InstallError> {
        if let Some(parent) = path.parent()
            && matches!(
                self.planned.get(parent),
                Some(Planned::Dir { created: true })
            )
        {
            return Ok(Existing::Missing);
        }
        (self.lookup)(path)
    }

    /// Make sure the destination and each ancestor is (or will be) a directory, creating missing ones.
    fn ensure_destination(&mut self, destination: &Path) -> Result<(), InstallError> {
        let mut prefix = PathBuf::new();
        for component in destination.components() {
            prefix.push(component);
            if matches!(component, Component::RootDir) {
                continue;
            }
            self.ensure_dir(&prefix, DEFAULT_DIR_MODE, true)?;
        }
        Ok(())
    }

    /// `path` must be a directory: reuse an existing or planned one, else plan a mkdir. Its parent is already
    /// known to be a directory (destinations are walked from the root, trees in pre-order).
    fn ensure_dir(
        &mut self,
        path: &Path,
        mode: u32,
        follow_symlink: bool,
    ) -> Result<(), InstallError> {
        match self.planned.get(path) {
            Some(Planned::Dir { .. }) => return Ok(()),
            Some(Planned::NotDir { from }) => {
                return Err(clash(
                    path,
                    "a directory",
                    format!("a file copied from {}", from.display()),
                ));
            }
            None => {}
        }
        let created = match self.existing(path)? {
            Existing::Dir => false,
            Existing::Symlink { to_dir: true } if follow_symlink => false,
            Existing::Missing => {
                self.plan.instructions.push(Instruction::Mkdir {
                    path: path.to_owned(),
                    mode,
                });
                true
            }
            Existing::Symlink { .. } => {
                return Err(clash(
                    path,
                    "a directory",
                    "an existing symlink (never followed inside a copy)".into(),
                ));
            }
            Existing::File => return Err(clash(path, "a directory", "an existing file".into())),
            Existing::Other => {
                return Err(clash(
                    path,
                    "a directory",
                    "an existing special file".into(),
                ));
            }
        };
        self.planned
            .insert(path.to_owned(), Planned::Dir { created });
        self.plan.dirs.insert(path.to_owned());
        Ok(())
    }

    /// Plan a file or symlink at `target`.
    fn place(
        &mut self,
        entry: &SourceEntry,
        target: &Path,
        behavior: FileExistsBehavior,
        copy: impl FnOnce(bool) -> Instruction,
    ) -> Result<(), InstallError> {
        match self.planned.get(target) {
            Some(Planned::NotDir { from }) => {
                return Err(InstallError::DuplicateDestination {
                    path: target.to_owned(),
                    first: from.clone(),
                    second: entry.path.clone(),
                });
            }
            Some(Planned::Dir { created: true }) => {
                return Err(clash(
                    target,
                    "a file",
                    "a directory this deployment creates".into(),
                ));
            }
            Some(Planned::Dir { created: false }) => {
                return Err(clash(target, "a file", "an existing directory".into()));
            }
            None => {}
        }
        let instruction = match self.existing(target)? {
            Existing::Missing => copy(false),
            Existing::Dir => return Err(clash(target, "a file", "an existing directory".into())),
            Existing::File | Existing::Symlink { .. } | Existing::Other => match behavior {
                FileExistsBehavior::Disallow => {
                    return Err(InstallError::FileExists {
                        path: target.to_owned(),
                    });
                }
                FileExistsBehavior::Overwrite => copy(true),
                FileExistsBehavior::Retain => Instruction::Retain {
                    from: entry.path.clone(),
                    path: target.to_owned(),
                },
            },
        };
        self.plan.instructions.push(instruction);
        self.planned.insert(
            target.to_owned(),
            Planned::NotDir {
                from: entry.path.clone(),
            },
        );
        Ok(())
    }
}

fn clash(path: &Path, expected: &'static str, found: String) -> InstallError {
    InstallError::FileDirClash {
        path: path.to_owned(),
        expected,
        found,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(rel: &str) -> SourceEntry {
        SourceEntry {
            rel: rel.into(),
            path: Path::new("/rev").join(rel),
            kind: SourceKind::File { mode: 0o6755 },
        }
    }

    fn dir(rel: &str) -> SourceEntry {
        SourceEntry {
            rel: rel.into(),
            path: Path::new("/rev").join(rel),
            kind: SourceKind::Dir { mode: 0o750 },
        }
    }

    fn listing(dest: &str, entries: Vec<SourceEntry>) -> MappingListing {
        MappingListing {
            destination: dest.into(),
            entries,
        }
    }

    /// A destination where `/`, `/srv` exist and the listed paths hold what is given.
    fn world(
        existing: &[(&str, Existing)],
    ) -> impl FnMut(&Path) -> Result<Existing, InstallError> + use<> {
        let mut map: HashMap<PathBuf, Existing> = existing
            .iter()
            .map(|(p, e)| (PathBuf::from(p), *e))
            .collect();
        map.insert("/srv".into(), Existing::Dir);
        move |p| Ok(map.get(p).copied().unwrap_or(Existing::Missing))
    }

    #[test]
    fn missing_ancestors_are_created_in_order_and_modes_drop_setuid() -> Result<(), InstallError> {
        let plan = plan_copies(
            &[listing("/srv/a/b", vec![dir("d"), file("d/f")])],
            FileExistsBehavior::Disallow,
            world(&[]),
        )?;
        assert_eq!(
            plan.instructions,
            vec![
                Instruction::Mkdir {
                    path: "/srv/a".into(),
                    mode: DEFAULT_DIR_MODE
                },
                Instruction::Mkdir {
                    path: "/srv/a/b".into(),
                    mode: DEFAULT_DIR_MODE
                },
                Instruction::Mkdir {
                    path: "/srv/a/b/d".into(),
                    mode: 0o750
                },
                Instruction::CopyFile {
                    from: "/rev/d/f".into(),
                    to: "/srv/a/b/d/f".into(),
                    mode: 0o755,
                    replace: false
                },
            ]
        );
        Ok(())
    }

    #[test]
    fn existing_file_follows_the_behaviour() -> Result<(), InstallError> {
        let existing = [("/srv/app", Existing::Dir), ("/srv/app/f", Existing::File)];
        let files = [listing("/srv/app", vec![file("f")])];
        let err = plan_copies(&files, FileExistsBehavior::Disallow, world(&existing));
        assert!(
            matches!(err, Err(InstallError::FileExists { path }) if path == Path::new("/srv/app/f"))
        );
        let plan = plan_copies(&files, FileExistsBehavior::Overwrite, world(&existing))?;
        assert!(matches!(
            &plan.instructions[..],
            [Instruction::CopyFile { replace: true, .. }]
        ));
        let plan = plan_copies(&files, FileExistsBehavior::Retain, world(&existing))?;
        assert!(matches!(
            &plan.instructions[..],
            [Instruction::Retain { .. }]
        ));
        Ok(())
    }

    #[test]
    fn nothing_is_copied_into_the_agent_root() {
        let files = [listing("/srv", vec![dir("agent"), file("agent/state")])];
        let err = check_protected(&files, Path::new("/srv/agent"));
        assert!(
            matches!(err, Err(InstallError::DestinationInAgentRoot { path, .. }) if path == Path::new("/srv/agent"))
        );
        assert!(check_protected(&files, Path::new("/srv/agent2")).is_ok());
    }

    #[test]
    fn two_sources_to_one_destination_is_an_error() {
        let files = [
            listing("/srv/app", vec![file("f")]),
            listing("/srv/app", vec![file("f")]),
        ];
        let err = plan_copies(&files, FileExistsBehavior::Overwrite, world(&[]));
        assert!(
            matches!(err, Err(InstallError::DuplicateDestination { path, .. }) if path == Path::new("/srv/app/f"))
        );
    }

    #[test]
    fn file_over_directory_and_directory_over_file_clash() {
        // A file where a planned directory is.
        let files = [
            listing("/srv/app", vec![dir("x")]),
            listing("/srv/app", vec![file("x")]),
        ];
        let err = plan_copies(&files, FileExistsBehavior::Overwrite, world(&[]));
        assert!(matches!(
            err,
            Err(InstallError::FileDirClash {
                expected: "a file",
                ..
            })
        ));
        // A directory where a planned file is.
        let files = [
            listing("/srv/app", vec![file("x")]),
            listing("/srv/app", vec![dir("x")]),
        ];
        let err = plan_copies(&files, FileExistsBehavior::Overwrite, world(&[]));
        assert!(matches!(
            err,
            Err(InstallError::FileDirClash {
                expected: "a directory",
                ..
            })
        ));
        // A file where an existing directory is: no behaviour makes that right.
        let existing = [("/srv/app", Existing::Dir), ("/srv/app/x", Existing::Dir)];
        let err = plan_copies(
            &[listing("/srv/app", vec![file("x")])],
            FileExistsBehavior::Overwrite,
            world(&existing),
        );
        assert!(matches!(
            err,
            Err(InstallError::FileDirClash {
                expected: "a file",
                ..
            })
        ));
        // A destination below an existing file.
        let err = plan_copies(
            &[listing("/srv/f/app", vec![])],
            FileExistsBehavior::Overwrite,
            world(&[("/srv/f", Existing::File)]),
        );
        assert!(
            matches!(err, Err(InstallError::FileDirClash { path, .. }) if path == Path::new("/srv/f"))
        );
    }

    #[test]
    fn symlinks_are_followed_only_on_the_destination_path() -> Result<(), InstallError> {
        let existing = [("/srv/app", Existing::Symlink { to_dir: true })];
        let plan = plan_copies(
            &[listing("/srv/app", vec![file("f")])],
            FileExistsBehavior::Disallow,
            world(&existing),
        )?;
        assert_eq!(plan.instructions.len(), 1);
        let existing = [
            ("/srv/app", Existing::Dir),
            ("/srv/app/sub", Existing::Symlink { to_dir: true }),
        ];
        let err = plan_copies(
            &[listing("/srv/app", vec![dir("sub"), file("sub/f")])],
            FileExistsBehavior::Overwrite,
            world(&existing),
        );
        assert!(
            matches!(err, Err(InstallError::FileDirClash { path, .. }) if path == Path::new("/srv/app/sub"))
        );
        Ok(())
    }

    #[test]
    fn existing_directories_are_reused_not_recorded() -> Result<(), InstallError> {
        let existing = [("/srv/app", Existing::Dir), ("/srv/app/d", Existing::Dir)];
        let plan = plan_copies(
            &[listing("/srv/app", vec![dir("d"), file("d/f")])],
            FileExistsBehavior::Disallow,
            world(&existing),
        )?;
        assert!(matches!(
            &plan.instructions[..],
            [Instruction::CopyFile { .. }]
        ));
        assert!(plan.dirs.contains(Path::new("/srv/app/d")));
        Ok(())
    }
}
