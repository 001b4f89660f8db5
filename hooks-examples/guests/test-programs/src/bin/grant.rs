//! What a hook may leave in a read-write grant (issue 12):
//! - `grant symlink TARGET LINK`: make a symlink; prints `ok`/`denied: ERR` and exits 0 either way (a hook that
//!   ignores the error must still fail);
//! - `grant hardlink FROM TO`: make a hard link; same output, exits 0 either way;
//! - `grant rename FROM TO`: rename; same output, exits 0 either way;
//! - `grant fill PATH MIB [TIMES]`: write MIB MiB of zeros to PATH in 64 KiB writes, TIMES times over (each time
//!   truncating the file first); prints `ok wrote …` and exits 0, or `denied: ERR` and exits 1;
//! - `grant append PATH MIB`: the same, appending to PATH (opened with `O_APPEND`, so every write lands at the end
//!   whatever the descriptor's position says);
//! - `grant pwrite PATH OFFSET LEN`: write LEN bytes at byte OFFSET of PATH with `pwrite` (created if missing, not
//!   truncated); prints `ok …` and exits 0, or `denied: ERR` and exits 1;
//! - `grant setlen PATH LEN [LEN…]`: resize PATH (created if missing) to each LEN bytes in turn with `ftruncate`;
//!   same output;
//! - `grant stream METHOD PATH LEN [SRC]` (components only): write LEN bytes to PATH through a `wasi:io` output
//!   stream with one method — `write` (after `check-write`), `blocking-write` (`blocking-write-and-flush`),
//!   `zeroes` (`write-zeroes`), `blocking-zeroes`, `append` (`append-via-stream`, blocking writes), `splice` /
//!   `blocking-splice` (LEN bytes of the file SRC); prints `ok wrote N bytes` and exits 0, or
//!   `denied: ERROR-CODE` and exits 1. `grant stream reuse PATH LEN` writes LEN bytes to PATH through a stream,
//!   drops the file and then the stream, and prints a line through a new stdout stream (which the host's table
//!   gives the dropped stream's handle). A preview-1 build prints that it has no streams and exits 2.
use std::io::Write as _;
use std::os::fd::AsRawFd as _;

fn open_for_write(path: &str) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new().write(true).create(true).truncate(false).open(path)
}

fn pwrite(path: &str, offset: u64, len: usize) -> std::io::Result<()> {
    let f = open_for_write(path)?;
    let buf = vec![b'x'; len];
    let offset = libc::off_t::try_from(offset).map_err(std::io::Error::other)?;
    // SAFETY: `buf` is valid for `len` bytes and `f` stays open for the call.
    let n = unsafe { libc::pwrite(f.as_raw_fd(), buf.as_ptr().cast(), buf.len(), offset) };
    match usize::try_from(n) {
        Ok(n) if n == len => Ok(()),
        Ok(n) => Err(std::io::Error::other(format!("short write: {n} of {len}"))),
        Err(_) => Err(std::io::Error::last_os_error()),
    }
}

fn exit_with(r: std::io::Result<()>, what: &str) {
    match r {
        Ok(()) => println!("ok {what}"),
        Err(e) => {
            println!("denied: {e}");
            std::process::exit(1);
        }
    }
}

fn report(r: std::io::Result<()>) {
    match r {
        Ok(()) => println!("ok"),
        Err(e) => println!("denied: {e}"),
    }
}

fn fill(path: &str, mib: usize, times: usize, append: bool) -> std::io::Result<()> {
    let chunk = vec![0u8; 64 << 10];
    for _ in 0..times {
        let mut f = if append {
            std::fs::OpenOptions::new().append(true).create(true).open(path)?
        } else {
            std::fs::File::create(path)?
        };
        for _ in 0..mib * 16 {
            f.write_all(&chunk)?;
        }
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        #[allow(deprecated, reason = "std::os::wasi::fs::symlink_path is unstable; soft_link is the stable call")]
        ["symlink", target, link] => report(std::fs::soft_link(target, link)),
        ["hardlink", from, to] => report(std::fs::hard_link(from, to)),
        ["rename", from, to] => report(std::fs::rename(from, to)),
        [mode @ ("fill" | "append"), path, mib, rest @ ..] => {
            let mib: usize = mib.parse().unwrap_or(1);
            let times: usize = rest.first().and_then(|t| t.parse().ok()).unwrap_or(1);
            match fill(path, mib, times, *mode == "append") {
                Ok(()) => println!("ok wrote {mib} MiB {times} times"),
                Err(e) => {
                    println!("denied: {e}");
                    std::process::exit(1);
                }
            }
        }
        ["pwrite", path, offset, len] => {
            let offset: u64 = offset.parse().unwrap_or(0);
            let len: usize = len.parse().unwrap_or(0);
            exit_with(pwrite(path, offset, len), &format!("wrote {len} bytes at {offset}"));
        }
        ["setlen", path, lens @ ..] if !lens.is_empty() => {
            let lens: Vec<u64> = lens.iter().map(|l| l.parse().unwrap_or(0)).collect();
            let resize = open_for_write(path).and_then(|f| lens.iter().try_for_each(|&l| f.set_len(l)));
            exit_with(resize, &format!("resized to {lens:?}"));
        }
        ["stream", "reuse", path, len] => {
            let len: u64 = len.parse().unwrap_or(0);
            exit_with(streams::reuse(path, len), "printed after the file");
        }
        ["stream", method, path, len, src @ ..] => {
            let len: u64 = len.parse().unwrap_or(0);
            exit_with(streams::write(method, path, len, src.first().copied()), &format!("wrote {len} bytes"));
        }
        other => {
            eprintln!("usage: grant symlink TARGET LINK | hardlink FROM TO | rename FROM TO | fill PATH MIB [TIMES] | append PATH MIB | pwrite PATH OFFSET LEN | setlen PATH LEN (got {other:?})");
            std::process::exit(2);
        }
    }
}

/// Writes through `wasi:io/streams` directly, one method at a time (std uses only some of them).
#[cfg(target_env = "p2")]
mod streams {
    use wasip2::filesystem::preopens::get_directories;
    use wasip2::filesystem::types::{Descriptor, DescriptorFlags, OpenFlags, PathFlags, filesystem_error_code};
    use wasip2::io::streams::{InputStream, OutputStream, StreamError};

    /// The most the blocking calls take at once (the WIT contract).
    const BLOCKING_MAX: u64 = 4096;

    fn io_err(e: impl std::fmt::Debug) -> std::io::Error {
        std::io::Error::other(format!("{e:?}"))
    }

    fn stream_err(e: StreamError) -> std::io::Error {
        match e {
            StreamError::LastOperationFailed(e) => io_err(filesystem_error_code(&e)),
            StreamError::Closed => io_err("closed"),
        }
    }

    /// Open `path` (under one of the preopens) with `flags`.
    fn open(path: &str, oflags: OpenFlags, flags: DescriptorFlags) -> std::io::Result<Descriptor> {
        for (dir, name) in get_directories() {
            if let Some(rel) = path.strip_prefix(&format!("{name}/")) {
                return dir.open_at(PathFlags::empty(), rel, oflags, flags).map_err(io_err);
            }
        }
        Err(io_err(format!("no preopen for {path}")))
    }

    fn source(src: Option<&str>) -> std::io::Result<(Descriptor, InputStream)> {
        let f = open(src.unwrap_or_default(), OpenFlags::empty(), DescriptorFlags::READ)?;
        let input = f.read_via_stream(0).map_err(io_err)?;
        Ok((f, input))
    }

    /// Wait until `out` takes more, and say how much.
    fn room(out: &OutputStream) -> std::io::Result<u64> {
        loop {
            match out.check_write().map_err(stream_err)? {
                0 => out.subscribe().block(),
                n => return Ok(n),
            }
        }
    }

    pub fn write(method: &str, path: &str, len: u64, src: Option<&str>) -> std::io::Result<()> {
        let f = open(path, OpenFlags::CREATE, DescriptorFlags::WRITE)?;
        let out = if method == "append" {
            f.append_via_stream()
        } else {
            f.write_via_stream(0)
        }
        .map_err(io_err)?;
        let mut left = len;
        while left > 0 {
            let n = match method {
                "write" => {
                    let n = room(&out)?.min(left).min(64 << 10);
                    out.write(&vec![b'w'; n as usize]).map_err(stream_err)?;
                    n
                }
                "blocking-write" | "append" => {
                    let n = left.min(BLOCKING_MAX);
                    out.blocking_write_and_flush(&vec![b'b'; n as usize]).map_err(stream_err)?;
                    n
                }
                "zeroes" => {
                    let n = room(&out)?.min(left).min(64 << 10);
                    out.write_zeroes(n).map_err(stream_err)?;
                    n
                }
                "blocking-zeroes" => {
                    let n = left.min(BLOCKING_MAX);
                    out.blocking_write_zeroes_and_flush(n).map_err(stream_err)?;
                    n
                }
                "splice" | "blocking-splice" => {
                    let (_src_file, input) = source(src)?;
                    let mut done = 0;
                    while done < left {
                        let n = if method == "splice" {
                            room(&out)?;
                            out.splice(&input, left - done).map_err(stream_err)?
                        } else {
                            out.blocking_splice(&input, left - done).map_err(stream_err)?
                        };
                        if n == 0 {
                            input.subscribe().block();
                        }
                        done += n;
                    }
                    done
                }
                other => return Err(io_err(format!("unknown method {other}"))),
            };
            left -= n;
        }
        out.blocking_flush().map_err(stream_err)
    }

    pub fn reuse(path: &str, len: u64) -> std::io::Result<()> {
        let f = open(path, OpenFlags::CREATE, DescriptorFlags::WRITE)?;
        let out = f.write_via_stream(0).map_err(io_err)?;
        let mut left = len;
        while left > 0 {
            let n = left.min(BLOCKING_MAX);
            out.blocking_write_and_flush(&vec![b'r'; n as usize]).map_err(stream_err)?;
            left -= n;
        }
        // The file first, then its stream: the host's table hands out the last freed handle first.
        drop(f);
        drop(out);
        let stdout = wasip2::cli::stdout::get_stdout();
        stdout
            .blocking_write_and_flush(b"printed through the dropped stream's handle\n")
            .map_err(stream_err)
    }
}

#[cfg(not(target_env = "p2"))]
mod streams {
    pub fn write(_: &str, _: &str, _: u64, _: Option<&str>) -> std::io::Result<()> {
        eprintln!("grant stream: a preview-1 module has no wasi:io streams");
        std::process::exit(2);
    }

    pub fn reuse(path: &str, len: u64) -> std::io::Result<()> {
        write("reuse", path, len, None)
    }
}
