//! Measure the package pipeline on the hostile bundles of issue 12 (time and, under `/usr/bin/time -v`, peak RSS):
//!
//! ```text
//! cargo run --release -p rollcage-runtime --example hostile_bundle -- make DIR   # write the bundles
//! /usr/bin/time -v target/release/examples/hostile_bundle fetch DIR/longname.tar.gz
//! ```
//!
//! `fetch` unpacks into a temporary agent root and prints how long it took and the error (its length, and its
//! first 300 bytes). Only the crate's public API is used, so the same file measures an older revision.

use rollcage_runtime::layout::GroupLayout;
use rollcage_runtime::package::{FetchOptions, Source, fetch};
use std::io::Write;
use std::path::Path;
use std::time::Instant;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn header(name: &[u8], ty: tar::EntryType, size: u64, link: &[u8]) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    {
        let old = h.as_old_mut();
        old.name = [0; 100];
        old.name[..name.len()].copy_from_slice(name);
        old.linkname = [0; 100];
        old.linkname[..link.len()].copy_from_slice(link);
    }
    h.set_entry_type(ty);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    h
}

fn pad(w: &mut impl Write, len: u64) -> Result<()> {
    w.write_all(&vec![0; ((512 - len % 512) % 512) as usize])?;
    Ok(())
}

/// A gzip'd tar whose first member is an extension header of `len` bytes of `a` (then a NUL), describing `member`.
fn extension(path: &Path, ty: tar::EntryType, len: u64, member: tar::Header) -> Result<()> {
    let file = std::fs::File::create(path)?;
    let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    gz.write_all(header(b"././@LongLink", ty, len + 1, b"").as_bytes())?;
    let chunk = vec![b'a'; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len() as u64);
        gz.write_all(&chunk[..usize::try_from(n)?])?;
        left -= n;
    }
    gz.write_all(&[0])?;
    pad(&mut gz, len + 1)?;
    let size = member.entry_size()?;
    gz.write_all(member.as_bytes())?;
    gz.write_all(&vec![b'x'; usize::try_from(size)?])?;
    pad(&mut gz, size)?;
    gz.write_all(&[0; 1024])?;
    gz.finish()?;
    Ok(())
}

fn make(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let file = |n: &[u8], size| header(n, tar::EntryType::Regular, size, b"");
    extension(
        &dir.join("longname.tar.gz"),
        tar::EntryType::GNULongName,
        64 << 20,
        file(b"x", 1),
    )?;
    extension(
        &dir.join("longlink.tar.gz"),
        tar::EntryType::GNULongLink,
        64 << 20,
        header(b"l", tar::EntryType::Symlink, 0, b""),
    )?;
    // 5,000 directories deep, each a member.
    let gz = flate2::write::GzEncoder::new(
        std::fs::File::create(dir.join("deep5000.tar.gz"))?,
        flate2::Compression::default(),
    );
    let mut b = tar::Builder::new(gz);
    let mut path = String::new();
    for _ in 0..5000 {
        path.push_str("d/");
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        b.append_data(&mut h, &path, std::io::empty())?;
    }
    b.into_inner()?.finish()?;
    // appspec.yml twice, the second replacing the first.
    let mut t = Vec::new();
    for body in [
        &b"version: 0.0\nos: linux\n"[..],
        b"version: 0.0\nos: linux\n#evil\n",
    ] {
        t.extend_from_slice(file(b"appspec.yml", body.len() as u64).as_bytes());
        t.extend_from_slice(body);
        pad(&mut t, body.len() as u64)?;
    }
    t.extend([0; 1024]);
    std::fs::write(dir.join("dup.tar"), &t)?;
    // A good tar.gz followed by garbage.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&t[..1024])?;
    gz.write_all(&[0; 1024])?;
    let mut bytes = gz.finish()?;
    bytes.extend(b"trailing garbage after the gzip stream");
    std::fs::write(dir.join("trailing.tar.gz"), bytes)?;
    Ok(())
}

async fn run(bundle: &Path) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let group = GroupLayout::new(tmp.path(), "app", "group")?;
    let deploy = group.deployment("d-1")?;
    let start = Instant::now();
    let result = fetch(
        &Source::Archive(bundle.to_owned()),
        &deploy,
        &FetchOptions::default(),
    )
    .await;
    let took = start.elapsed();
    match result {
        Ok(f) => println!(
            "{}: ok in {took:?}: {} entries",
            bundle.display(),
            f.entries
        ),
        Err(e) => {
            let text = e.to_string();
            let head: String = text.chars().take(300).collect();
            println!(
                "{}: refused in {took:?}; error of {} bytes: {head}",
                bundle.display(),
                text.len()
            );
        }
    }
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [cmd, dir] if cmd == "make" => make(Path::new(dir)),
        [cmd, bundle] if cmd == "fetch" => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(run(Path::new(bundle))),
        _ => Err("usage: hostile_bundle make DIR | hostile_bundle fetch BUNDLE".into()),
    }
}
