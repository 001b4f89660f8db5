//! Read a bundle archive in place for `appspec check`: list its entries, keep the AppSpec's text and the first
//! bytes of each file, and answer the validator's questions about revision paths from that list (symlinks
//! resolved inside the archive). Nothing is extracted or written.

use flate2::read::MultiGzDecoder;
use rollcage_runtime::appspec::{APPSPEC_FILE_NAMES, RevisionEntry, RevisionView, WASM_MAGIC};
use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

/// Bytes read from the start of PATH to tell the formats apart (the tar magic sits at offset 257).
pub(crate) const SNIFF_LEN: usize = 512;

/// An AppSpec larger than this is not a real one; stop rather than hold an arbitrary entry in memory.
const MAX_APPSPEC_BYTES: u64 = 1024 * 1024;

/// Symlink hops followed before giving up, as the kernel's `ELOOP` limit.
const MAX_SYMLINK_HOPS: usize = 40;

/// Archive formats, told apart by content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Tar,
    TarGz,
    Zip,
}

impl Format {
    /// The format of a file starting with `head`, if it is an archive.
    pub(crate) fn sniff(head: &[u8]) -> Option<Self> {
        if head.starts_with(&[0x1f, 0x8b]) {
            Some(Self::TarGz)
        } else if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
            Some(Self::Zip)
        } else if head.len() >= 262 && &head[257..262] == b"ustar" {
            Some(Self::Tar)
        } else {
            None
        }
    }
}

/// One archive entry, as far as the validator cares.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Dir,
    File {
        wasm: bool,
    },
    Symlink(String),
    /// A hard link to another entry (archive-root relative name).
    Hardlink(String),
    Other,
}

/// An archive's entries, names relative to the revision root (wrapper directory stripped).
#[derive(Debug)]
pub(crate) struct ArchiveRevision {
    /// Name of the AppSpec inside the archive, as written there (wrapper included).
    pub appspec_name: String,
    pub appspec_text: String,
    entries: BTreeMap<String, Entry>,
}

/// Normalise an entry name: no `./`, no trailing `/`. `None` for names that leave the archive root (the
/// package pipeline refuses those; they cannot be a revision path here).
fn normalise(name: &str) -> Option<String> {
    if name.starts_with('/') {
        return None;
    }
    let mut parts = Vec::new();
    for c in name.split('/') {
        match c {
            "" | "." => {}
            ".." => return None,
            c => parts.push(c),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// Collected while reading: every entry plus the text of candidate AppSpecs (root or one level down).
#[derive(Default)]
struct Listing {
    entries: BTreeMap<String, Entry>,
    appspecs: BTreeMap<String, String>,
}

impl Listing {
    fn is_candidate(name: &str) -> bool {
        let depth = name.matches('/').count();
        let base = name.rsplit('/').next().unwrap_or(name);
        depth <= 1 && APPSPEC_FILE_NAMES.contains(&base)
    }

    /// Record a regular file, reading what is needed from `content`.
    fn file(&mut self, name: String, content: &mut dyn Read) -> std::io::Result<()> {
        if Self::is_candidate(&name) {
            let mut bytes = Vec::new();
            content
                .take(MAX_APPSPEC_BYTES + 1)
                .read_to_end(&mut bytes)?;
            if bytes.len() as u64 > MAX_APPSPEC_BYTES {
                return Err(std::io::Error::other(format!(
                    "{name} is larger than {MAX_APPSPEC_BYTES} bytes"
                )));
            }
            let wasm = bytes.starts_with(&WASM_MAGIC);
            let text = String::from_utf8(bytes)
                .map_err(|_| std::io::Error::other(format!("{name} is not UTF-8 text")))?;
            self.appspecs.insert(name.clone(), text);
            self.entries.insert(name, Entry::File { wasm });
            return Ok(());
        }
        let mut magic = Vec::with_capacity(4);
        content.take(4).read_to_end(&mut magic)?;
        self.entries.insert(
            name,
            Entry::File {
                wasm: magic == WASM_MAGIC,
            },
        );
        Ok(())
    }

    /// Pick the AppSpec (root first, else under a single wrapper dir) and strip the wrapper from every name.
    fn finish(self) -> Option<ArchiveRevision> {
        let roots: std::collections::BTreeSet<&str> = self
            .entries
            .keys()
            .map(|k| k.split('/').next().unwrap_or(k))
            .collect();
        let wrapper = match roots.iter().collect::<Vec<_>>().as_slice() {
            [only]
                if !APPSPEC_FILE_NAMES.contains(only)
                    && self.entries.get(**only).is_none_or(|e| *e == Entry::Dir) =>
            {
                Some(format!("{only}/"))
            }
            _ => None,
        };
        let prefix = wrapper.unwrap_or_default();
        let appspec_name = APPSPEC_FILE_NAMES
            .iter()
            .map(|n| format!("{prefix}{n}"))
            .find(|n| self.appspecs.contains_key(n))?;
        let appspec_text = self.appspecs.get(&appspec_name)?.clone();
        let strip = |name: &str| name.strip_prefix(prefix.as_str()).map(str::to_owned);
        let entries = self
            .entries
            .into_iter()
            .filter_map(|(name, entry)| {
                let entry = match entry {
                    Entry::Hardlink(target) => Entry::Hardlink(strip(&target).unwrap_or_default()),
                    e => e,
                };
                Some((strip(&name)?, entry))
            })
            .filter(|(name, _)| !name.is_empty())
            .collect();
        Some(ArchiveRevision {
            appspec_name,
            appspec_text,
            entries,
        })
    }
}

/// Read the archive at `path`. `Ok(Err(_))` when it holds no AppSpec (a finding, not an I/O error).
pub(crate) fn read(
    path: &Path,
    format: Format,
) -> std::io::Result<Result<ArchiveRevision, String>> {
    let mut listing = Listing::default();
    let file = BufReader::new(File::open(path)?);
    match format {
        Format::Tar => read_tar(file, &mut listing)?,
        Format::TarGz => read_tar(MultiGzDecoder::new(file), &mut listing)?,
        Format::Zip => read_zip(File::open(path)?, &mut listing)?,
    }
    Ok(listing
        .finish()
        .ok_or_else(|| "no appspec.yml or appspec.yaml at the root of the archive or of its single top directory".to_owned()))
}

fn read_tar(reader: impl Read, listing: &mut Listing) -> std::io::Result<()> {
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let raw_name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let Some(name) = normalise(&raw_name) else {
            continue;
        };
        let link = entry
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).into_owned());
        let kind = entry.header().entry_type();
        if kind.is_file() || kind == tar::EntryType::Continuous {
            listing.file(name, &mut entry)?;
            continue;
        }
        let recorded = if kind.is_dir() {
            Entry::Dir
        } else if kind.is_symlink() {
            Entry::Symlink(link.unwrap_or_default())
        } else if kind.is_hard_link() {
            link.as_deref()
                .and_then(normalise)
                .map_or(Entry::Other, Entry::Hardlink)
        } else if kind.is_pax_global_extensions()
            || kind.is_pax_local_extensions()
            || kind.is_gnu_longname()
        {
            continue;
        } else {
            Entry::Other
        };
        listing.entries.insert(name, recorded);
    }
    Ok(())
}

fn read_zip(file: File, listing: &mut Listing) -> std::io::Result<()> {
    let mut archive = zip::ZipArchive::new(BufReader::new(file)).map_err(std::io::Error::other)?;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(std::io::Error::other)?;
        let Some(name) = normalise(entry.name()) else {
            continue;
        };
        if entry.is_dir() {
            listing.entries.insert(name, Entry::Dir);
        } else if entry.is_symlink() {
            let mut target = String::new();
            entry.by_ref().take(4096).read_to_string(&mut target)?;
            listing.entries.insert(name, Entry::Symlink(target));
        } else {
            listing.file(name, &mut entry)?;
        }
    }
    Ok(())
}

impl ArchiveRevision {
    /// A name with no entry of its own is still a directory when entries live below it (tar files often omit
    /// directory entries).
    fn implicit_dir(&self, name: &str) -> bool {
        let prefix = format!("{name}/");
        self.entries
            .range(prefix.clone()..)
            .next()
            .is_some_and(|(k, _)| k.starts_with(&prefix))
    }
}

impl RevisionView for ArchiveRevision {
    fn lookup(&self, relative: &str) -> RevisionEntry {
        let mut resolved: Vec<String> = Vec::new();
        let mut pending: VecDeque<String> = relative.split('/').map(str::to_owned).collect();
        let mut hops = 0;
        let mut last = RevisionEntry::Directory;
        while let Some(part) = pending.pop_front() {
            match part.as_str() {
                "" | "." => continue,
                ".." => {
                    if resolved.pop().is_none() {
                        return RevisionEntry::Escapes {
                            target: format!("{relative} (above the revision root)"),
                        };
                    }
                    last = RevisionEntry::Directory;
                    continue;
                }
                _ => {}
            }
            if !matches!(last, RevisionEntry::Directory) {
                // Walking through something that is not a directory.
                return RevisionEntry::Missing;
            }
            resolved.push(part);
            let key = resolved.join("/");
            let mut entry = self.entries.get(&key).cloned();
            if let Some(Entry::Hardlink(target)) = &entry {
                entry = self.entries.get(target).cloned().or(Some(Entry::Other));
            }
            last = match entry {
                Some(Entry::Dir) => RevisionEntry::Directory,
                Some(Entry::File { wasm }) => RevisionEntry::File { wasm },
                Some(Entry::Symlink(target)) => {
                    hops += 1;
                    if hops > MAX_SYMLINK_HOPS {
                        return RevisionEntry::Other;
                    }
                    if target.starts_with('/') {
                        return RevisionEntry::Escapes { target };
                    }
                    resolved.pop();
                    for c in target.split('/').rev() {
                        pending.push_front(c.to_owned());
                    }
                    RevisionEntry::Directory
                }
                Some(Entry::Hardlink(_) | Entry::Other) => RevisionEntry::Other,
                None if self.implicit_dir(&key) => RevisionEntry::Directory,
                None => return RevisionEntry::Missing,
            };
        }
        last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn revision(entries: &[(&str, Entry)]) -> ArchiveRevision {
        ArchiveRevision {
            appspec_name: "appspec.yml".to_owned(),
            appspec_text: String::new(),
            entries: entries
                .iter()
                .map(|(n, e)| ((*n).to_owned(), e.clone()))
                .collect(),
        }
    }

    #[test]
    fn symlinks_resolve_inside_the_archive_and_escapes_are_caught() {
        let rev = revision(&[
            ("scripts/start.sh", Entry::File { wasm: false }),
            ("scripts/alias.sh", Entry::Symlink("start.sh".to_owned())),
            ("scripts/out.sh", Entry::Symlink("/bin/sh".to_owned())),
            ("scripts/up", Entry::Symlink("../..".to_owned())),
            ("hooks/v.wasm", Entry::File { wasm: true }),
        ]);
        assert_eq!(
            rev.lookup("scripts/start.sh"),
            RevisionEntry::File { wasm: false }
        );
        assert_eq!(
            rev.lookup("scripts/alias.sh"),
            RevisionEntry::File { wasm: false }
        );
        assert!(matches!(
            rev.lookup("scripts/out.sh"),
            RevisionEntry::Escapes { .. }
        ));
        assert!(matches!(
            rev.lookup("scripts/up/etc/passwd"),
            RevisionEntry::Escapes { .. }
        ));
        assert_eq!(rev.lookup("scripts"), RevisionEntry::Directory);
        assert_eq!(rev.lookup("scripts/nope.sh"), RevisionEntry::Missing);
        assert_eq!(rev.lookup("scripts/start.sh/x"), RevisionEntry::Missing);
        assert_eq!(
            rev.lookup("hooks/v.wasm"),
            RevisionEntry::File { wasm: true }
        );
    }

    #[test]
    fn formats_are_sniffed_by_content() {
        let mut tar_head = vec![0u8; 512];
        tar_head[257..262].copy_from_slice(b"ustar");
        assert_eq!(Format::sniff(&tar_head), Some(Format::Tar));
        assert_eq!(Format::sniff(&[0x1f, 0x8b, 8, 0]), Some(Format::TarGz));
        assert_eq!(Format::sniff(b"PK\x03\x04rest"), Some(Format::Zip));
        assert_eq!(Format::sniff(b"version: 0.0\n"), None);
    }
}
