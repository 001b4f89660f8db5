//! Reading tar and zip archives entry by entry into an [`Unpacker`]. Only the container formats are parsed here;
//! every decision about names, links and limits is the unpacker's.

use super::entry_path::MAX_PATH_BYTES;
use super::error::{PackageError, SHOWN_NAME_BYTES, one_line, shown};
use super::unpack::{Kind, Unpacker, name_too_long};
use super::zip_directory;
use std::io::{BufReader, Read};
use std::path::Path;
use tar::EntryType;

/// Largest pax extended header (`x`) read. It carries a path and a link target (at most [`MAX_PATH_BYTES`] each)
/// and metadata we do not use (times, owners, xattrs and ACLs, e.g. macOS's `com.apple.*` attributes); tar tools
/// write a few hundred bytes to a few KiB. 1 MiB is far above that, and is the most one member's headers cost in
/// memory, whatever the archive declares.
pub(crate) const MAX_PAX_HEADER_BYTES: u64 = 1 << 20;

/// Largest zip central directory accepted. The `zip` crate keeps every record parsed in memory (the name about
/// three times over, plus a few hundred bytes per member): 8 MiB is 100,000 members with 40-byte paths, and keeps
/// what the parse costs within the agent's memory budget (a 40 MiB directory of long names cost 130 MiB).
pub(crate) const MAX_ZIP_DIRECTORY_BYTES: u64 = 8 << 20;

/// Most members a zip may list. The `zip` crate holds about 640 bytes per member while the archive is read, even
/// for short names (99,999 empty members peaked at 64 MB): 40,000 members cost about 25 MB, which keeps the agent
/// under its 64 MiB budget for any zip. Tar archives are streamed and keep the general entry limit.
pub const MAX_ZIP_MEMBERS: u64 = 40_000;

fn malformed(origin: &str, entry: Option<&[u8]>, e: impl std::fmt::Display) -> PackageError {
    PackageError::Malformed {
        origin: origin.to_owned(),
        entry: entry.map(shown),
        detail: one_line(&e.to_string(), 2 * SHOWN_NAME_BYTES),
    }
}

/// Extension headers read so far for the member that follows them: GNU long name (`L`), long link (`K`) and a pax
/// extended header (`x`), each at most once, as the tar crate would apply them.
#[derive(Default)]
struct Pending {
    /// Byte offset of the member's first header (its first extension header).
    start: Option<u64>,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax_path: Option<Vec<u8>>,
    pax_link: Option<Vec<u8>>,
    pax_size: Option<u64>,
    pax: bool,
}

/// Read an extension header's data of `size` bytes (already checked against its bound).
fn read_ext(entry: &mut impl Read, size: u64) -> std::io::Result<Vec<u8>> {
    let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    entry.take(size).read_to_end(&mut data)?;
    Ok(data)
}

/// A GNU long name or link: a C string, NUL-terminated (and sometimes NUL-padded).
fn c_string(mut data: Vec<u8>) -> Vec<u8> {
    while data.last() == Some(&0) {
        data.pop();
    }
    data
}

/// Unpack a (decompressed) tar stream.
///
/// Entries are read raw and the extension headers applied here, within bounds: the tar crate would read a GNU long
/// name or a pax header whole into memory, however long the archive says it is (a 64 MiB name cost the agent over a
/// GiB). A long name or link is refused from its declared size, before any of it is read; a pax header past
/// [`MAX_PAX_HEADER_BYTES`] likewise.
pub(crate) fn unpack_tar<R: Read>(input: R, u: &mut Unpacker) -> Result<(), PackageError> {
    let origin = u.origin().to_owned();
    let mut archive = tar::Archive::new(input);
    let entries = archive
        .entries()
        .map_err(|e| malformed(&origin, None, e))?
        .raw(true);
    let mut pending = Pending::default();
    for entry in entries {
        let mut entry = entry.map_err(|e| malformed(&origin, None, e))?;
        let offset = entry.raw_header_position();
        let ty = entry.header().entry_type();
        // Raw entries have the header's own size: a pax `size` record is checked against it below.
        let size = entry.size();
        let ext_err = |e: std::io::Error| malformed(&origin, None, e);
        match ty {
            EntryType::GNULongName | EntryType::GNULongLink => {
                let (what, taken) = if ty == EntryType::GNULongName {
                    ("GNU long name", pending.long_name.is_some())
                } else {
                    ("GNU long link", pending.long_link.is_some())
                };
                if taken {
                    return Err(malformed(
                        &origin,
                        None,
                        format!("two {what} headers for one member (the second at byte {offset})"),
                    ));
                }
                // The data is the name and its NUL terminator.
                if size > MAX_PATH_BYTES as u64 + 1 {
                    let mut head = Vec::new();
                    (&mut entry)
                        .take(SHOWN_NAME_BYTES as u64)
                        .read_to_end(&mut head)
                        .map_err(ext_err)?;
                    return Err(PackageError::NameTooLong {
                        what,
                        len: size,
                        limit: MAX_PATH_BYTES as u64,
                        prefix: shown(&head),
                    });
                }
                let data = c_string(read_ext(&mut entry, size).map_err(ext_err)?);
                pending.start.get_or_insert(offset);
                if ty == EntryType::GNULongName {
                    pending.long_name = Some(data);
                } else {
                    pending.long_link = Some(data);
                }
                continue;
            }
            EntryType::XHeader => {
                if pending.pax {
                    return Err(malformed(
                        &origin,
                        None,
                        format!(
                            "two pax extended headers for one member (the second at byte {offset})"
                        ),
                    ));
                }
                if size > MAX_PAX_HEADER_BYTES {
                    return Err(PackageError::ExtensionTooLarge {
                        offset,
                        len: size,
                        limit: MAX_PAX_HEADER_BYTES,
                    });
                }
                let data = read_ext(&mut entry, size).map_err(ext_err)?;
                pending.start.get_or_insert(offset);
                pending.pax = true;
                for record in tar::PaxExtensions::new(&data) {
                    let record = record.map_err(|e| {
                        malformed(&origin, None, format!("pax header at byte {offset}: {e}"))
                    })?;
                    match record.key_bytes() {
                        b"path" => pending.pax_path = Some(record.value_bytes().to_vec()),
                        b"linkpath" => pending.pax_link = Some(record.value_bytes().to_vec()),
                        b"size" => {
                            let value = std::str::from_utf8(record.value_bytes())
                                .ok()
                                .and_then(|v| v.parse::<u64>().ok())
                                .ok_or_else(|| {
                                    malformed(
                                        &origin,
                                        None,
                                        format!(
                                            "pax header at byte {offset}: `size` is not a number"
                                        ),
                                    )
                                })?;
                            pending.pax_size = Some(value);
                        }
                        _ => {}
                    }
                }
                continue;
            }
            _ => {}
        }
        let member = std::mem::take(&mut pending);
        let header = entry.header();
        // The tar crate's precedence: a GNU long name, then a pax path, then the header's own (ustar prefix + name).
        let name = member
            .long_name
            .or(member.pax_path)
            .unwrap_or_else(|| header.path_bytes().into_owned());
        let link = member
            .long_link
            .or(member.pax_link)
            .or_else(|| header.link_name_bytes().map(|l| l.into_owned()));
        if let Some(pax_size) = member.pax_size
            && pax_size != size
        {
            // The member's data would be read with one size and skipped with the other; anything that needs a pax
            // size (≥ 8 GiB) is over the unpack limit anyway.
            if pax_size > u.limits().max_bytes {
                return Err(PackageError::TooManyBytes {
                    limit: u.limits().max_bytes,
                    entry: shown(&name),
                });
            }
            return Err(malformed(
                &origin,
                Some(&name),
                format!("its pax size ({pax_size}) differs from its header's ({size})"),
            ));
        }
        let mode = header
            .mode()
            .map_err(|e| malformed(&origin, Some(&name), e))?;
        let start = member.start.unwrap_or(offset);
        if let Some(link) = &link
            && link.len() > MAX_PATH_BYTES
        {
            return Err(name_too_long("link target", link));
        }
        let kind = match ty {
            EntryType::Regular | EntryType::Continuous => Kind::File(&mut entry, size),
            EntryType::Directory => Kind::Dir,
            EntryType::Symlink => Kind::Symlink(link.unwrap_or_default()),
            EntryType::Link => Kind::HardLink(link.unwrap_or_default()),
            EntryType::Char => Kind::Special("character device"),
            EntryType::Block => Kind::Special("block device"),
            EntryType::Fifo => Kind::Special("fifo"),
            EntryType::XGlobalHeader => Kind::Skip,
            EntryType::GNUSparse => Kind::Unsupported("GNU sparse file".into()),
            other => Kind::Unsupported(format!("tar entry type {:?}", other.as_byte() as char)),
        };
        u.add(&name, Some(start), mode, kind)?;
    }
    if let Some(start) = pending.start {
        return Err(malformed(
            &origin,
            None,
            format!("the extension headers at byte {start} describe no member: the archive ends"),
        ));
    }
    Ok(())
}

/// Unpack the zip file at `path` (zip needs random access to its central directory).
pub(crate) fn unpack_zip(path: &Path, u: &mut Unpacker) -> Result<(), PackageError> {
    let origin = u.origin().to_owned();
    let mut file = std::fs::File::open(path).map_err(|e| PackageError::io("open", path, e))?;
    // The zip crate parses the whole central directory into memory: refuse one too large (or listing too many
    // members) from the end record, before it is parsed.
    let max = u.limits().max_entries;
    let declared =
        zip_directory::declared(&mut file).map_err(|e| PackageError::io("read", path, e))?;
    if let Some(dir) = declared {
        if dir.entries > max {
            return Err(PackageError::TooManyEntries {
                limit: max,
                entry: format!("member {} (of {} listed)", max + 1, dir.entries),
            });
        }
        if dir.entries > MAX_ZIP_MEMBERS {
            return Err(PackageError::ZipTooManyMembers {
                origin,
                members: dir.entries,
                limit: MAX_ZIP_MEMBERS,
            });
        }
        if dir.bytes > MAX_ZIP_DIRECTORY_BYTES {
            return Err(PackageError::ZipDirectoryTooLarge {
                origin,
                bytes: dir.bytes,
                limit: MAX_ZIP_DIRECTORY_BYTES,
            });
        }
    }
    let mut archive =
        zip::ZipArchive::new(BufReader::new(file)).map_err(|e| malformed(&origin, None, e))?;
    // The central directory says how many members there are: refuse before writing anything.
    if archive.len() as u64 > max {
        let entry = archive
            .by_index_raw(usize::try_from(max).unwrap_or(usize::MAX))
            .map(|m| shown(m.name_raw()))
            .unwrap_or_default();
        return Err(PackageError::TooManyEntries { limit: max, entry });
    }
    for i in 0..archive.len() {
        let (name, encrypted, unix_mode, is_dir, offset) = {
            let raw = archive
                .by_index_raw(i)
                .map_err(|e| malformed(&origin, None, e))?;
            (
                raw.name_raw().to_vec(),
                raw.encrypted(),
                raw.unix_mode(),
                raw.is_dir(),
                Some(raw.header_start()),
            )
        };
        if encrypted {
            let kind = Kind::Unsupported("encrypted zip member".into());
            u.add(&name, offset, 0, kind)?;
            continue;
        }
        let mut member = archive
            .by_index(i)
            .map_err(|e| malformed(&origin, Some(&name), e))?;
        let ftype = unix_mode.map(|m| m & 0o170_000).unwrap_or(0);
        let default_mode = if is_dir { 0o755 } else { 0o644 };
        let mode = unix_mode.map(|m| m & 0o7777).unwrap_or(default_mode);
        let size = member.size();
        match ftype {
            0o120_000 => {
                // One byte more than the limit is read, so a longer target (whatever the member's declared size)
                // is refused by the unpacker, never cut short.
                let mut target = Vec::new();
                (&mut member)
                    .take(MAX_PATH_BYTES as u64 + 1)
                    .read_to_end(&mut target)
                    .map_err(|e| malformed(&origin, Some(&name), e))?;
                u.add(&name, offset, mode, Kind::Symlink(target))?;
            }
            0o020_000 => u.add(&name, offset, mode, Kind::Special("character device"))?,
            0o060_000 => u.add(&name, offset, mode, Kind::Special("block device"))?,
            0o010_000 => u.add(&name, offset, mode, Kind::Special("fifo"))?,
            0o140_000 => u.add(&name, offset, mode, Kind::Special("socket"))?,
            _ if is_dir || ftype == 0o040_000 => u.add(&name, offset, mode, Kind::Dir)?,
            _ => u.add(&name, offset, mode, Kind::File(&mut member, size))?,
        }
    }
    Ok(())
}
