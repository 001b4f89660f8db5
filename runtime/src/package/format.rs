//! Archive format detection from the first bytes of a bundle (magic numbers), never from its name.

/// A bundle's container format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// Plain (ustar, GNU or pax) tar.
    Tar,
    /// gzip; its content is unpacked as tar.
    Gzip,
    /// zip (local file header, or the end-of-central-directory record of an empty zip).
    Zip,
}

/// How many leading bytes [`detect`] wants to see (one tar header block).
pub(crate) const SNIFF_LEN: usize = 512;

/// Detect the format from `head` (the first up to [`SNIFF_LEN`] bytes).
pub(crate) fn detect(head: &[u8]) -> Option<Format> {
    if head.starts_with(&[0x1f, 0x8b]) {
        return Some(Format::Gzip);
    }
    if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        return Some(Format::Zip);
    }
    if head.len() >= SNIFF_LEN && is_tar_header(&head[..SNIFF_LEN]) {
        return Some(Format::Tar);
    }
    None
}

/// A tar header block: `ustar` magic at offset 257, or (for old v7 archives without magic) a valid checksum.
fn is_tar_header(block: &[u8]) -> bool {
    if &block[257..262] == b"ustar" {
        return true;
    }
    // The checksum field (148..156) is octal, computed with the field itself taken as eight spaces.
    let field = &block[148..156];
    let digits: Vec<u8> = field
        .iter()
        .copied()
        .filter(|b| (b'0'..=b'7').contains(b))
        .collect();
    if digits.is_empty() || block.iter().all(|b| *b == 0) {
        return false;
    }
    let Some(stored) = std::str::from_utf8(&digits)
        .ok()
        .and_then(|s| u32::from_str_radix(s, 8).ok())
    else {
        return false;
    };
    let sum: u32 = block
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                u32::from(b' ')
            } else {
                u32::from(*b)
            }
        })
        .sum();
    sum == stored
}

/// Up to the first 8 bytes in hex, for error messages.
pub(crate) fn head_hex(head: &[u8]) -> String {
    hex::encode(&head[..head.len().min(8)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_numbers() {
        assert_eq!(detect(&[0x1f, 0x8b, 8, 0]), Some(Format::Gzip));
        assert_eq!(detect(b"PK\x03\x04rest"), Some(Format::Zip));
        assert_eq!(detect(b"PK\x05\x06rest"), Some(Format::Zip));
        let mut block = vec![0u8; 512];
        block[257..263].copy_from_slice(b"ustar\0");
        assert_eq!(detect(&block), Some(Format::Tar));
        assert_eq!(detect(b"#!/bin/sh\necho hi\n"), None);
        assert_eq!(detect(&[0u8; 512]), None);
    }

    #[test]
    fn v7_tar_is_recognised_by_checksum() {
        let mut block = vec![0u8; 512];
        block[..5].copy_from_slice(b"hello");
        let sum: u32 = block.iter().map(|b| u32::from(*b)).sum::<u32>() + 8 * u32::from(b' ');
        let field = format!("{sum:06o}\0 ");
        block[148..156].copy_from_slice(field.as_bytes());
        assert_eq!(detect(&block), Some(Format::Tar));
        block[0] = b'j';
        assert_eq!(detect(&block), None);
    }
}
