//! Reading tar and zip archives entry by entry into an [`Unpacker`]. Only the container formats are parsed here;
//! every decision about names, links and limits is the unpacker's.

use super::error::PackageError;
use super::unpack::{Kind, Unpacker};
use std::io::{BufReader, Read};
use std::path::Path;
use tar::EntryType;

/// Longest symlink target read from a zip member (Linux's `PATH_MAX`).
const MAX_LINK_TARGET: u64 = 4096;

fn malformed(origin: &str, entry: Option<&[u8]>, e: impl std::fmt::Display) -> PackageError {
    PackageError::Malformed {
        origin: origin.to_owned(),
        entry: entry.map(|e| String::from_utf8_lossy(e).into_owned()),
        detail: e.to_string(),
    }
}

/// Unpack a (decompressed) tar stream.
pub(crate) fn unpack_tar<R: Read>(input: R, u: &mut Unpacker) -> Result<(), PackageError> {
    let origin = u.origin().to_owned();
    let mut archive = tar::Archive::new(input);
    let entries = archive.entries().map_err(|e| malformed(&origin, None, e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| malformed(&origin, None, e))?;
        // `path_bytes` already applies GNU long names and pax `path` records.
        let name = entry.path_bytes().into_owned();
        let header = entry.header();
        let mode = header
            .mode()
            .map_err(|e| malformed(&origin, Some(&name), e))?;
        let link = entry.link_name_bytes().map(|l| l.into_owned());
        let size = entry.size();
        let ty = header.entry_type();
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
        u.add(&name, mode, kind)?;
    }
    Ok(())
}

/// Unpack the zip file at `path` (zip needs random access to its central directory).
pub(crate) fn unpack_zip(path: &Path, u: &mut Unpacker) -> Result<(), PackageError> {
    let origin = u.origin().to_owned();
    let file = std::fs::File::open(path).map_err(|e| PackageError::io("open", path, e))?;
    let mut archive =
        zip::ZipArchive::new(BufReader::new(file)).map_err(|e| malformed(&origin, None, e))?;
    // The central directory says how many members there are: refuse before writing anything.
    let max = u.limits().max_entries;
    if archive.len() as u64 > max {
        let entry = archive
            .by_index_raw(usize::try_from(max).unwrap_or(usize::MAX))
            .map(|m| String::from_utf8_lossy(m.name_raw()).into_owned())
            .unwrap_or_default();
        return Err(PackageError::TooManyEntries { limit: max, entry });
    }
    for i in 0..archive.len() {
        let (name, encrypted, unix_mode, is_dir) = {
            let raw = archive
                .by_index_raw(i)
                .map_err(|e| malformed(&origin, None, e))?;
            (
                raw.name_raw().to_vec(),
                raw.encrypted(),
                raw.unix_mode(),
                raw.is_dir(),
            )
        };
        if encrypted {
            let kind = Kind::Unsupported("encrypted zip member".into());
            u.add(&name, 0, kind)?;
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
                let mut target = Vec::new();
                (&mut member)
                    .take(MAX_LINK_TARGET)
                    .read_to_end(&mut target)
                    .map_err(|e| malformed(&origin, Some(&name), e))?;
                u.add(&name, mode, Kind::Symlink(target))?;
            }
            0o020_000 => u.add(&name, mode, Kind::Special("character device"))?,
            0o060_000 => u.add(&name, mode, Kind::Special("block device"))?,
            0o010_000 => u.add(&name, mode, Kind::Special("fifo"))?,
            0o140_000 => u.add(&name, mode, Kind::Special("socket"))?,
            _ if is_dir || ftype == 0o040_000 => u.add(&name, mode, Kind::Dir)?,
            _ => u.add(&name, mode, Kind::File(&mut member, size))?,
        }
    }
    Ok(())
}
