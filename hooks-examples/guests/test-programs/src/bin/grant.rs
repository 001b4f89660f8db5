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
//!   same output.
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
        other => {
            eprintln!("usage: grant symlink TARGET LINK | hardlink FROM TO | rename FROM TO | fill PATH MIB [TIMES] | append PATH MIB | pwrite PATH OFFSET LEN | setlen PATH LEN (got {other:?})");
            std::process::exit(2);
        }
    }
}
