//! What a zip's end-of-central-directory record says about its central directory (member count and size), read
//! before the `zip` crate parses the directory: that crate keeps every record parsed in memory, so a directory the
//! agent cannot afford is refused from these few bytes first.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

/// The end-of-central-directory record: signature, then fixed fields (22 bytes), then a comment of at most 64 KiB.
const EOCD_SIG: &[u8; 4] = b"PK\x05\x06";
const EOCD_LEN: u64 = 22;
const MAX_COMMENT: u64 = 0xFFFF;
/// The zip64 locator (20 bytes, just before the record) and the zip64 record it points to.
const LOCATOR_SIG: &[u8; 4] = b"PK\x06\x07";
const LOCATOR_LEN: u64 = 20;
const ZIP64_SIG: &[u8; 4] = b"PK\x06\x06";

/// The central directory as the archive declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Directory {
    /// Members listed.
    pub(crate) entries: u64,
    /// Its size in bytes.
    pub(crate) bytes: u64,
}

fn u16_at(b: &[u8], at: usize) -> u64 {
    u64::from(u16::from_le_bytes([b[at], b[at + 1]]))
}

fn u32_at(b: &[u8], at: usize) -> u64 {
    u64::from(u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut v = [0; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

fn read_at(file: &mut File, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    file.seek(SeekFrom::Start(offset))?;
    let mut buf = vec![0; len];
    file.read_exact(&mut buf)?;
    Ok(buf)
}

/// The central directory `file` declares, or `None` when no end record is found (the zip crate then says why).
pub(crate) fn declared(file: &mut File) -> io::Result<Option<Directory>> {
    let len = file.metadata()?.len();
    if len < EOCD_LEN {
        return Ok(None);
    }
    let tail_start = len.saturating_sub(EOCD_LEN + MAX_COMMENT);
    let tail = read_at(
        file,
        tail_start,
        usize::try_from(len - tail_start).unwrap_or(0),
    )?;
    // The last signature whose comment fits in the file, as readers search for it.
    let Some(at) = (0..=tail.len() - EOCD_LEN as usize).rev().find(|&i| {
        &tail[i..i + 4] == EOCD_SIG
            && i as u64 + EOCD_LEN + u16_at(&tail, i + 20) <= tail.len() as u64
    }) else {
        return Ok(None);
    };
    let record = &tail[at..at + EOCD_LEN as usize];
    let mut dir = Directory {
        entries: u16_at(record, 10),
        bytes: u32_at(record, 12),
    };
    let zip64 =
        dir.entries == 0xFFFF || dir.bytes == 0xFFFF_FFFF || u32_at(record, 16) == 0xFFFF_FFFF;
    let eocd_offset = tail_start + at as u64;
    if zip64 && eocd_offset >= LOCATOR_LEN {
        let locator = read_at(file, eocd_offset - LOCATOR_LEN, LOCATOR_LEN as usize)?;
        if &locator[..4] == LOCATOR_SIG {
            let record = read_at(file, u64_at(&locator, 8), 56)?;
            if &record[..4] == ZIP64_SIG {
                dir = Directory {
                    entries: u64_at(&record, 32),
                    bytes: u64_at(&record, 40),
                };
            }
        }
    }
    Ok(Some(dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn the_end_record_is_found_behind_a_comment() -> Result<(), Box<dyn std::error::Error>> {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for name in ["a", "b/c"] {
            w.start_file(name, zip::write::SimpleFileOptions::default())?;
            w.write_all(b"x")?;
        }
        w.set_comment("PK\x05\x06 a comment that looks like a record");
        let bytes = w.finish()?.into_inner();
        let mut file = tempfile::tempfile()?;
        file.write_all(&bytes)?;
        let dir = declared(&mut file)?.ok_or("no end record")?;
        assert_eq!(dir.entries, 2);
        assert!(dir.bytes > 2 * 46 && dir.bytes < 200, "{dir:?}");
        let mut other = tempfile::tempfile()?;
        other.write_all(b"not a zip at all, just some bytes")?;
        assert_eq!(declared(&mut other)?, None);
        Ok(())
    }
}
