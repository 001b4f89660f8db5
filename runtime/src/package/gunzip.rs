//! Decompressing a gzip bundle: every member in turn, as `gzip -d` does, and a precise verdict on what follows the
//! last one. `flate2`'s `MultiGzDecoder` takes any bytes after a member for the header of another and reports
//! garbage as "invalid gzip header"; here the bytes after a member are looked at first: another member (magic
//! `1f 8b`), zero padding (as tape tools and `dd` leave; ignored, like `gzip -d` does), or trailing data, which is
//! refused with where the gzip stream ends and how many bytes follow.

use flate2::bufread::GzDecoder;
use std::io::{self, BufRead, Read};

/// Bytes after the last gzip member that are not zero padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Trailing {
    /// Offset in the compressed input where the last member ends.
    pub(crate) end: u64,
    /// How many bytes follow it.
    pub(crate) bytes: u64,
}

/// A `BufRead` that counts the bytes consumed from it.
struct Counted<R> {
    inner: R,
    pos: u64,
}

impl<R: BufRead> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.inner.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Counted<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        self.pos += amt as u64;
        self.inner.consume(amt);
    }
}

/// The decompressed content of every gzip member of `R`, one after another.
pub(crate) struct Gunzip<R: BufRead> {
    /// The member being decompressed.
    member: Option<GzDecoder<Counted<R>>>,
    /// The input between members (and once done).
    between: Option<Counted<R>>,
    trailing: Option<Trailing>,
}

impl<R: BufRead> Gunzip<R> {
    /// Decompress `input`, which starts with a gzip member.
    pub(crate) fn new(input: R) -> Self {
        Self {
            member: Some(GzDecoder::new(Counted {
                inner: input,
                pos: 0,
            })),
            between: None,
            trailing: None,
        }
    }

    /// Trailing data found after the last member, once a read failed because of it.
    pub(crate) fn trailing(&self) -> Option<Trailing> {
        self.trailing
    }

    /// At the end of a member: start the next one, or decide what the rest is. `Ok(false)` at the end of the input.
    fn next_member(&mut self) -> io::Result<bool> {
        let Some(mut input) = self.between.take() else {
            return Ok(false);
        };
        let head = input.fill_buf()?;
        // A second byte that is not 0x8b means this is no member; one byte alone (a chunk boundary) is taken as the
        // start of one, and the decoder judges its header.
        let member = match head {
            [] => false,
            [0x1f] | [0x1f, 0x8b, ..] => true,
            _ => {
                let end = input.pos;
                let mut bytes = 0u64;
                let mut zeros = true;
                loop {
                    let chunk = input.fill_buf()?;
                    if chunk.is_empty() {
                        break;
                    }
                    zeros = zeros && chunk.iter().all(|b| *b == 0);
                    let n = chunk.len();
                    bytes += n as u64;
                    input.consume(n);
                }
                self.between = Some(input);
                if zeros {
                    return Ok(false);
                }
                self.trailing = Some(Trailing { end, bytes });
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "gzip stream ends at byte {end}; {bytes} bytes of trailing data follow"
                    ),
                ));
            }
        };
        if member {
            self.member = Some(GzDecoder::new(input));
        } else {
            self.between = Some(input);
        }
        Ok(member)
    }
}

impl<R: BufRead> Read for Gunzip<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if let Some(decoder) = self.member.as_mut() {
                let n = decoder.read(buf)?;
                if n > 0 {
                    return Ok(n);
                }
                self.between = self.member.take().map(GzDecoder::into_inner);
            }
            if !self.next_member()? {
                return Ok(0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use std::io::Write;

    fn gz(data: &[u8]) -> io::Result<Vec<u8>> {
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(data)?;
        e.finish()
    }

    fn gunzip(input: &[u8]) -> (io::Result<Vec<u8>>, Option<Trailing>) {
        let mut g = Gunzip::new(input);
        let mut out = Vec::new();
        let r = g.read_to_end(&mut out).map(|_| out);
        (r, g.trailing())
    }

    #[test]
    fn members_are_concatenated() -> io::Result<()> {
        let mut input = gz(b"hello ")?;
        input.extend(gz(b"world")?);
        let (out, trailing) = gunzip(&input);
        assert_eq!(out?, b"hello world");
        assert_eq!(trailing, None);
        Ok(())
    }

    #[test]
    fn zero_padding_is_ignored() -> io::Result<()> {
        let mut input = gz(b"data")?;
        input.extend([0u8; 1024]);
        let (out, trailing) = gunzip(&input);
        assert_eq!(out?, b"data");
        assert_eq!(trailing, None);
        Ok(())
    }

    #[test]
    fn trailing_data_is_located() -> io::Result<()> {
        let member = gz(b"data")?;
        let mut input = member.clone();
        input.extend(b"GARBAGE!");
        let (out, trailing) = gunzip(&input);
        let err = out.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("trailing data"), "{err}");
        assert_eq!(
            trailing,
            Some(Trailing {
                end: member.len() as u64,
                bytes: 8
            })
        );
        Ok(())
    }
}
