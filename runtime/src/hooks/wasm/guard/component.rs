//! The guard's place in the component linker: the `wasi:filesystem/types` and `wasi:io/streams` methods that make
//! links, open, resize or write files, or drop descriptors and streams are shadowed (`Linker::allow_shadowing`) by
//! versions that apply [`FsGuard`]'s rules and then call wasmtime-wasi's own implementation (`HostDescriptor` of
//! `WasiFilesystemCtxView`, `HostOutputStream` of the `ResourceTable`), so its capability checks and error mapping
//! still run unchanged. `open-at` and `get-directories` are shadowed in [`crate::hooks::wasm::component`] (they feed
//! the audit too) and call in here.
//!
//! What is tracked, by resource handle (`Resource::rep()`; a handle is forgotten when the guest drops it, because
//! the table reuses it):
//! - **Descriptors** leading into a read-write grant ([`FsGuard`]): its preopens as `get-directories` hands them
//!   out, and whatever `open-at` opens from a tracked directory.
//! - **Output streams** onto a file under a grant (`write-via-stream`, `append-via-stream` of a tracked
//!   descriptor): the grant, the file (wasmtime-wasi's `File` keeps the OS file in an `Arc`; the stream holds a
//!   clone, so it outlives its descriptor and so does our handle on it) and where the next write lands (the offset
//!   the stream was made at plus what it wrote, or the end of file). wasi-libc on `wasm32-wasip2` (Rust std,
//!   Python, JavaScript) writes files this way: `write` after `check-write`, or `blocking-write-and-flush`.
//!
//! The rules, as for preview 1: `symlink-at` checks the target ([`super::check_symlink_target`]); `link-at`
//! refuses a hard link to a symlink; `rename-at` refuses to move a symlink into another directory. The quota:
//! before each write through a tracked descriptor (`write`, i.e. `pwrite`) or stream (`write`, `write-zeroes`,
//! `blocking-write-and-flush`, `blocking-write-zeroes-and-flush`, `splice`, `blocking-splice`) or a `set-size`, its
//! worst-case growth ([`super::worst_growth`]) must fit; after it, what the file's size changed by is charged;
//! `open-at` with `truncate` gives the emptied file's bytes back.
//!
//! A stream's write is asynchronous in wasmtime-wasi (a background task; the guest learns the result from its next
//! `check-write`). A write onto a tracked stream is waited for before the call returns, so that the size after it
//! is the size the write left — the guest sees a `write` that took the time of the write, nothing else changes.
//! Hence no tracked write is ever in flight while another is measured, and the charge is exact.
//!
//! Conservative where it cannot be exact: a file whose size cannot be read counts as empty before a write and as
//! grown by the worst case after it. Errors: a refused link answers `not-permitted`, a refused `write` or
//! `set-size` `quota`, a refused stream write `last-operation-failed` whose `filesystem-error-code` is
//! `insufficient-space` (wasmtime-wasi maps no OS error to `quota`; a guest that reads the code gets `ENOSPC`).
//! wasi-libc does not read it for a file write, so Rust's std on `wasm32-wasip2` sees `EIO` ("I/O error") — the
//! hook fails as a sandbox violation naming the rule all the same. The stream stays usable after a refusal (the
//! WIT says it is closed after `last-operation-failed`; nothing is gained by enforcing that: every later write is
//! checked again).
//!
//! Cost: a write through a tracked stream or descriptor costs two `fstat`s and a hash-map lookup; every other
//! stream write (stdout, stderr, HTTP bodies) one hash-map lookup.

use super::{FsGuard, check_symlink_target, same_directory, worst_growth};
use crate::hooks::wasm::component::{ComponentState, WASI, fs_error};
use bytes::Bytes;
use rollcage_proto::SandboxSpec;
use std::collections::HashMap;
use std::sync::Arc;
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource, ResourceType};
use wasmtime_wasi::filesystem::WasiFilesystemView as _;
use wasmtime_wasi::p2::bindings::filesystem::types::{
    self as fs, Descriptor, DescriptorType, HostDescriptor, OpenFlags, PathFlags,
};
use wasmtime_wasi::p2::bindings::io::streams::{self, Host as _, StreamError as WitStreamError};
use wasmtime_wasi::p2::{
    DynInputStream, DynOutputStream, FsResult, Pollable as _, StreamError, StreamResult,
};

/// The most `blocking-write-and-flush` and `blocking-write-zeroes-and-flush` accept (the WIT contract;
/// wasmtime-wasi traps beyond it, and so do these wrappers, by calling it).
const MAX_BLOCKING_WRITE: usize = 4096;

/// Where a stream's next write lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cursor {
    /// At this offset (`write-via-stream`), moving on by what was written.
    At(u64),
    /// At the end of file, wherever that is (`append-via-stream`).
    Append,
}

/// An output stream onto a file under a read-write grant.
#[derive(Debug, Clone)]
struct FileStream {
    /// Index of the grant in [`FsGuard`].
    grant: usize,
    file: Arc<std::fs::File>,
    cursor: Cursor,
}

impl FileStream {
    /// Where the next write lands in a file of `size` bytes. Pure.
    fn pos(&self, size: u64) -> u64 {
        match self.cursor {
            Cursor::At(p) => p,
            Cursor::Append => size,
        }
    }
}

/// The guard of one component run: [`FsGuard`] for descriptors, plus the output streams onto files under its
/// read-write grants.
#[derive(Debug)]
pub(crate) struct ComponentGuard {
    pub(crate) fs: FsGuard,
    streams: HashMap<u32, FileStream>,
}

impl ComponentGuard {
    /// The guard of a run with this grant (no handle tracked until the guest asks for its preopens).
    pub(crate) fn new(spec: &SandboxSpec) -> Self {
        Self {
            fs: FsGuard::unopened(spec),
            streams: HashMap::new(),
        }
    }

    /// The stream `rep` was made on `file` under grant `g`.
    fn stream_made(&mut self, rep: u32, grant: usize, file: Arc<std::fs::File>, cursor: Cursor) {
        self.streams.insert(
            rep,
            FileStream {
                grant,
                file,
                cursor,
            },
        );
    }

    /// `len` bytes were written through stream `rep`.
    fn advanced(&mut self, rep: u32, len: u64) {
        if let Some(FileStream {
            cursor: Cursor::At(p),
            ..
        }) = self.streams.get_mut(&rep)
        {
            *p = p.saturating_add(len);
        }
    }
}

/// What `open-at` with `truncate` will give back under a tracked directory: the grant and the size of the regular
/// file it empties (stat'ed before the open). `None` for everything else.
pub(crate) async fn truncation(
    state: &mut ComponentState,
    dir: u32,
    path_flags: PathFlags,
    path: &str,
    oflags: OpenFlags,
) -> Option<(usize, u64)> {
    let grant = state.guard.fs.grant_of(dir)?;
    if !oflags.contains(OpenFlags::TRUNCATE) {
        return None;
    }
    let st = HostDescriptor::stat_at(
        &mut state.filesystem(),
        Resource::new_borrow(dir),
        path_flags,
        path.to_owned(),
    )
    .await
    .ok()?;
    (st.type_ == DescriptorType::RegularFile).then_some((grant, st.size))
}

/// `open-at` under `dir` returned the descriptor `new` (after [`truncation`] said what it emptied).
pub(crate) fn opened(
    state: &mut ComponentState,
    dir: u32,
    new: u32,
    truncated: Option<(usize, u64)>,
) {
    state.guard.fs.opened(dir, new);
    if let Some((g, freed)) = truncated {
        state.guard.fs.grew(g, -i128::from(freed));
    }
}

/// The size of a file before a write: `None` when it is not a regular file (nothing is charged, as for preview
/// 1); a size that cannot be read counts as 0, the worst case for what a write adds.
fn size_before(file: &std::fs::File) -> Option<u64> {
    match file.metadata() {
        Ok(m) if !m.is_file() => None,
        Ok(m) => Some(m.len()),
        Err(_) => Some(0),
    }
}

/// After a write or resize that was admitted with `worst` bytes of growth: charge what the file's size changed
/// by, or `worst` when the size after cannot be read.
fn settle(guard: &mut FsGuard, g: usize, file: &std::fs::File, before: u64, worst: u64) {
    let delta = match file.metadata() {
        Ok(m) => i128::from(m.len()) - i128::from(before),
        Err(_) => i128::from(worst),
    };
    guard.grew(g, delta);
}

/// The OS file behind a descriptor, when it is a file (not a directory).
fn file_of(state: &ComponentState, fd: &Resource<Descriptor>) -> Option<Arc<std::fs::File>> {
    match state.table.get(fd).ok()? {
        wasmtime_wasi::filesystem::Descriptor::File(f) => Some(f.file.clone()),
        wasmtime_wasi::filesystem::Descriptor::Dir(_) => None,
    }
}

/// Whether `path` under `dir` is itself a symlink (not followed); `false` when it cannot be looked up (the real
/// call then reports why).
async fn is_symlink(state: &mut ComponentState, dir: u32, path: &str) -> bool {
    HostDescriptor::stat_at(
        &mut state.filesystem(),
        Resource::new_borrow(dir),
        PathFlags::empty(),
        path.to_owned(),
    )
    .await
    .is_ok_and(|st| st.type_ == DescriptorType::SymbolicLink)
}

/// A filesystem call's result as the guest receives it (a host fault traps instead).
fn fs_result<T>(
    state: &mut ComponentState,
    r: FsResult<T>,
) -> wasmtime::Result<Result<T, fs::ErrorCode>> {
    match r {
        Ok(v) => Ok(Ok(v)),
        Err(e) => Ok(Err(fs_error(state, e)?)),
    }
}

/// A stream call's result as the guest receives it (`last-operation-failed` carries an `error` resource).
fn stream_result<T>(
    state: &mut ComponentState,
    r: StreamResult<T>,
) -> wasmtime::Result<Result<T, WitStreamError>> {
    match r {
        Ok(v) => Ok(Ok(v)),
        Err(e) => Ok(Err(state.table.convert_stream_error(e)?)),
    }
}

/// The error a refused stream write fails with: `ENOSPC`, which the guest reads back as `insufficient-space`
/// through `filesystem-error-code`.
fn quota_stream_error() -> StreamError {
    StreamError::LastOperationFailed(std::io::Error::from_raw_os_error(libc::ENOSPC).into())
}

/// What a stream write writes.
enum Payload {
    Bytes(Bytes),
    Zeroes(usize),
}

impl Payload {
    fn len(&self) -> u64 {
        match self {
            Self::Bytes(b) => b.len() as u64,
            Self::Zeroes(n) => *n as u64,
        }
    }
}

/// Write `payload` through `stream` and wait until it has landed. `blocking`: as `blocking-write-and-flush`
/// (waits for room first); otherwise as `write` (the caller had its `check-write`).
async fn write_and_wait(
    state: &mut ComponentState,
    stream: &Resource<DynOutputStream>,
    payload: Payload,
    blocking: bool,
) -> StreamResult<()> {
    let out = state.table.get_mut(stream)?;
    match (payload, blocking) {
        (Payload::Bytes(b), true) => out.blocking_write_and_flush(b).await,
        (Payload::Zeroes(n), true) => out.blocking_write_and_flush(vec![0u8; n].into()).await,
        (Payload::Bytes(b), false) => {
            out.write(b)?;
            out.ready().await;
            Ok(())
        }
        (Payload::Zeroes(n), false) => {
            out.write_zeroes(n)?;
            out.ready().await;
            Ok(())
        }
    }
}

/// A write through the tracked stream `stream`: admitted by its worst-case growth, waited for, charged by what
/// the file grew.
async fn guarded_write(
    state: &mut ComponentState,
    stream: &Resource<DynOutputStream>,
    tracked: FileStream,
    payload: Payload,
    blocking: bool,
) -> StreamResult<()> {
    let len = payload.len();
    let Some(size) = size_before(&tracked.file) else {
        return write_and_wait(state, stream, payload, blocking).await;
    };
    let worst = worst_growth(size, tracked.pos(size), len);
    if !state.guard.fs.admit(tracked.grant, worst) {
        return Err(quota_stream_error());
    }
    let r = write_and_wait(state, stream, payload, blocking).await;
    settle(
        &mut state.guard.fs,
        tracked.grant,
        &tracked.file,
        size,
        worst,
    );
    if r.is_ok() {
        state.guard.advanced(stream.rep(), len);
    }
    r
}

/// `splice` / `blocking-splice` into the tracked stream `dest`: wasmtime-wasi's steps (room, read, write), with
/// the write guarded.
async fn guarded_splice(
    state: &mut ComponentState,
    dest: &Resource<DynOutputStream>,
    src: &Resource<DynInputStream>,
    len: u64,
    tracked: FileStream,
    blocking: bool,
) -> StreamResult<u64> {
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    let out = state.table.get_mut(dest)?;
    let permit = if blocking {
        out.write_ready().await?
    } else {
        out.check_write()?
    };
    let len = len.min(permit);
    if len == 0 {
        return Ok(0);
    }
    let input = state.table.get_mut(src)?;
    let contents = if blocking {
        input.blocking_read(len).await?
    } else {
        input.read(len)?
    };
    if contents.is_empty() {
        return Ok(0);
    }
    let n = contents.len() as u64;
    guarded_write(state, dest, tracked, Payload::Bytes(contents), blocking).await?;
    Ok(n)
}

type Ctx<'a> = StoreContextMut<'a, ComponentState>;

/// Replace the `wasi:filesystem/types` and `wasi:io/streams` functions the guard needs to see. Call with
/// shadowing allowed, after `wasmtime_wasi::p2::add_to_linker_async`.
pub(crate) fn shadow(linker: &mut Linker<ComponentState>) -> wasmtime::Result<()> {
    shadow_links(linker)?;
    shadow_descriptor_writes(linker)?;
    shadow_streams(linker)
}

fn shadow_links(linker: &mut Linker<ComponentState>) -> wasmtime::Result<()> {
    let mut types = linker.instance(&format!("wasi:filesystem/types@{WASI}"))?;
    types.func_wrap_async(
        "[method]descriptor.symlink-at",
        |mut store: Ctx<'_>, (dir, target, link): (Resource<Descriptor>, String, String)| {
            Box::new(async move {
                let state = store.data_mut();
                if let Err(why) = check_symlink_target(&target) {
                    state
                        .guard
                        .fs
                        .refuse_symlink(dir.rep(), &link, &target, why);
                    return Ok((Err(fs::ErrorCode::NotPermitted),));
                }
                let r =
                    HostDescriptor::symlink_at(&mut state.filesystem(), dir, target, link).await;
                Ok((fs_result(state, r)?,))
            })
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.link-at",
        |mut store: Ctx<'_>,
         (dir, flags, old, new_dir, new): (
            Resource<Descriptor>,
            PathFlags,
            String,
            Resource<Descriptor>,
            String,
        )| {
            Box::new(async move {
                let state = store.data_mut();
                if is_symlink(state, dir.rep(), &old).await {
                    state.guard.fs.refuse_hard_link(new_dir.rep(), &old, &new);
                    return Ok((Err(fs::ErrorCode::NotPermitted),));
                }
                let r =
                    HostDescriptor::link_at(&mut state.filesystem(), dir, flags, old, new_dir, new)
                        .await;
                Ok((fs_result(state, r)?,))
            })
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.rename-at",
        |mut store: Ctx<'_>,
         (dir, old, new_dir, new): (Resource<Descriptor>, String, Resource<Descriptor>, String)| {
            Box::new(async move {
                let state = store.data_mut();
                // Within one directory a symlink keeps its meaning (the `current -> releases/v3` switch); moved
                // elsewhere, a relative target made by someone else may point out.
                if !same_directory(dir.rep(), &old, new_dir.rep(), &new)
                    && is_symlink(state, dir.rep(), &old).await
                {
                    state.guard.fs.refuse_move(new_dir.rep(), &old, &new);
                    return Ok((Err(fs::ErrorCode::NotPermitted),));
                }
                let r =
                    HostDescriptor::rename_at(&mut state.filesystem(), dir, old, new_dir, new).await;
                Ok((fs_result(state, r)?,))
            })
        },
    )?;
    // A dropped descriptor's handle is reused by the table: forget it.
    types.resource(
        "descriptor",
        ResourceType::host::<Descriptor>(),
        |mut store: Ctx<'_>, rep| {
            let state = store.data_mut();
            state.guard.fs.closed(rep);
            state.paths.remove(&rep);
            HostDescriptor::drop(&mut state.filesystem(), Resource::new_own(rep))
        },
    )?;
    Ok(())
}

fn shadow_descriptor_writes(linker: &mut Linker<ComponentState>) -> wasmtime::Result<()> {
    let mut types = linker.instance(&format!("wasi:filesystem/types@{WASI}"))?;
    types.func_wrap_async(
        "[method]descriptor.write",
        |mut store: Ctx<'_>, (fd, buf, offset): (Resource<Descriptor>, Vec<u8>, u64)| {
            Box::new(async move {
                let state = store.data_mut();
                let tracked = state.guard.fs.grant_of(fd.rep()).zip(file_of(state, &fd));
                let Some((g, file)) = tracked else {
                    let r = HostDescriptor::write(&mut state.filesystem(), fd, buf, offset).await;
                    return Ok((fs_result(state, r)?,));
                };
                let before = size_before(&file);
                let worst = before.map(|size| worst_growth(size, offset, buf.len() as u64));
                if let Some(worst) = worst
                    && !state.guard.fs.admit(g, worst)
                {
                    return Ok((Err(fs::ErrorCode::Quota),));
                }
                let r = HostDescriptor::write(&mut state.filesystem(), fd, buf, offset).await;
                if let (Some(size), Some(worst)) = (before, worst) {
                    settle(&mut state.guard.fs, g, &file, size, worst);
                }
                Ok((fs_result(state, r)?,))
            })
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.set-size",
        |mut store: Ctx<'_>, (fd, size): (Resource<Descriptor>, u64)| {
            Box::new(async move {
                let state = store.data_mut();
                let tracked = state.guard.fs.grant_of(fd.rep()).zip(file_of(state, &fd));
                let Some((g, file)) = tracked else {
                    let r = HostDescriptor::set_size(&mut state.filesystem(), fd, size).await;
                    return Ok((fs_result(state, r)?,));
                };
                let before = size_before(&file);
                let worst = before.map(|old| size.saturating_sub(old));
                if let Some(worst) = worst
                    && !state.guard.fs.admit(g, worst)
                {
                    return Ok((Err(fs::ErrorCode::Quota),));
                }
                let r = HostDescriptor::set_size(&mut state.filesystem(), fd, size).await;
                if let (Some(old), Some(worst)) = (before, worst) {
                    settle(&mut state.guard.fs, g, &file, old, worst);
                }
                Ok((fs_result(state, r)?,))
            })
        },
    )?;
    types.func_wrap(
        "[method]descriptor.write-via-stream",
        |mut store: Ctx<'_>, (fd, offset): (Resource<Descriptor>, u64)| {
            let state = store.data_mut();
            let tracked = state.guard.fs.grant_of(fd.rep()).zip(file_of(state, &fd));
            let r = HostDescriptor::write_via_stream(&mut state.filesystem(), fd, offset);
            if let (Ok(s), Some((g, file))) = (&r, tracked) {
                state
                    .guard
                    .stream_made(s.rep(), g, file, Cursor::At(offset));
            }
            Ok((fs_result(state, r)?,))
        },
    )?;
    types.func_wrap(
        "[method]descriptor.append-via-stream",
        |mut store: Ctx<'_>, (fd,): (Resource<Descriptor>,)| {
            let state = store.data_mut();
            let tracked = state.guard.fs.grant_of(fd.rep()).zip(file_of(state, &fd));
            let r = HostDescriptor::append_via_stream(&mut state.filesystem(), fd);
            if let (Ok(s), Some((g, file))) = (&r, tracked) {
                state.guard.stream_made(s.rep(), g, file, Cursor::Append);
            }
            Ok((fs_result(state, r)?,))
        },
    )?;
    Ok(())
}

fn shadow_streams(linker: &mut Linker<ComponentState>) -> wasmtime::Result<()> {
    let mut io = linker.instance(&format!("wasi:io/streams@{WASI}"))?;
    io.func_wrap_async(
        "[method]output-stream.write",
        |mut store: Ctx<'_>, (s, bytes): (Resource<DynOutputStream>, Vec<u8>)| {
            Box::new(async move {
                let state = store.data_mut();
                let r = match state.guard.streams.get(&s.rep()).cloned() {
                    None => streams::HostOutputStream::write(&mut state.table, s, bytes),
                    Some(t) => {
                        guarded_write(state, &s, t, Payload::Bytes(bytes.into()), false).await
                    }
                };
                Ok((stream_result(state, r)?,))
            })
        },
    )?;
    io.func_wrap_async(
        "[method]output-stream.blocking-write-and-flush",
        |mut store: Ctx<'_>, (s, bytes): (Resource<DynOutputStream>, Vec<u8>)| {
            Box::new(async move {
                let state = store.data_mut();
                let r = match state.guard.streams.get(&s.rep()).cloned() {
                    Some(t) if bytes.len() <= MAX_BLOCKING_WRITE => {
                        guarded_write(state, &s, t, Payload::Bytes(bytes.into()), true).await
                    }
                    _ => {
                        streams::HostOutputStream::blocking_write_and_flush(
                            &mut state.table,
                            s,
                            bytes,
                        )
                        .await
                    }
                };
                Ok((stream_result(state, r)?,))
            })
        },
    )?;
    io.func_wrap_async(
        "[method]output-stream.write-zeroes",
        |mut store: Ctx<'_>, (s, len): (Resource<DynOutputStream>, u64)| {
            Box::new(async move {
                let state = store.data_mut();
                let tracked = state.guard.streams.get(&s.rep()).cloned();
                let r = match (tracked, usize::try_from(len)) {
                    (Some(t), Ok(n)) => {
                        guarded_write(state, &s, t, Payload::Zeroes(n), false).await
                    }
                    _ => streams::HostOutputStream::write_zeroes(&mut state.table, s, len),
                };
                Ok((stream_result(state, r)?,))
            })
        },
    )?;
    io.func_wrap_async(
        "[method]output-stream.blocking-write-zeroes-and-flush",
        |mut store: Ctx<'_>, (s, len): (Resource<DynOutputStream>, u64)| {
            Box::new(async move {
                let state = store.data_mut();
                let tracked = state.guard.streams.get(&s.rep()).cloned();
                let r = match (tracked, usize::try_from(len)) {
                    (Some(t), Ok(n)) if n <= MAX_BLOCKING_WRITE => {
                        guarded_write(state, &s, t, Payload::Zeroes(n), true).await
                    }
                    _ => {
                        streams::HostOutputStream::blocking_write_zeroes_and_flush(
                            &mut state.table,
                            s,
                            len,
                        )
                        .await
                    }
                };
                Ok((stream_result(state, r)?,))
            })
        },
    )?;
    for (name, blocking) in [
        ("[method]output-stream.splice", false),
        ("[method]output-stream.blocking-splice", true),
    ] {
        io.func_wrap_async(
            name,
            move |mut store: Ctx<'_>,
                  (dest, src, len): (Resource<DynOutputStream>, Resource<DynInputStream>, u64)| {
                Box::new(async move {
                    let state = store.data_mut();
                    let r = match state.guard.streams.get(&dest.rep()).cloned() {
                        Some(t) => guarded_splice(state, &dest, &src, len, t, blocking).await,
                        None if blocking => {
                            streams::HostOutputStream::blocking_splice(
                                &mut state.table,
                                dest,
                                src,
                                len,
                            )
                            .await
                        }
                        None => streams::HostOutputStream::splice(&mut state.table, dest, src, len),
                    };
                    Ok((stream_result(state, r)?,))
                })
            },
        )?;
    }
    // A dropped stream's handle is reused by the table: forget it.
    io.resource_async(
        "output-stream",
        ResourceType::host::<DynOutputStream>(),
        |mut store: Ctx<'_>, rep| {
            Box::new(async move {
                let state = store.data_mut();
                state.guard.streams.remove(&rep);
                streams::HostOutputStream::drop(&mut state.table, Resource::new_own(rep)).await
            })
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(cursor: Cursor) -> Result<FileStream, std::io::Error> {
        Ok(FileStream {
            grant: 0,
            file: Arc::new(tempfile::tempfile()?),
            cursor,
        })
    }

    #[test]
    fn a_stream_writes_at_its_offset_or_at_the_end() -> Result<(), std::io::Error> {
        assert_eq!(stream(Cursor::At(7))?.pos(100), 7);
        assert_eq!(stream(Cursor::Append)?.pos(100), 100);
        let mut g = ComponentGuard::new(&SandboxSpec::default());
        g.streams.insert(3, stream(Cursor::At(7))?);
        g.streams.insert(4, stream(Cursor::Append)?);
        g.advanced(3, 10);
        g.advanced(4, 10);
        assert_eq!(g.streams.get(&3).map(|s| s.pos(0)), Some(17));
        assert_eq!(g.streams.get(&4).map(|s| s.pos(5)), Some(5));
        Ok(())
    }

    #[test]
    fn sizes_are_read_from_the_file_and_other_files_are_not_charged() -> Result<(), std::io::Error>
    {
        let f = tempfile::tempfile()?;
        f.set_len(5)?;
        assert_eq!(size_before(&f), Some(5));
        let dir = std::fs::File::open(std::env::temp_dir())?;
        assert_eq!(size_before(&dir), None);
        let spec = SandboxSpec {
            dirs: vec![rollcage_proto::DirGrant {
                host: "/h".to_owned(),
                guest: Some("/data".to_owned()),
                access: rollcage_proto::DirAccess::ReadWrite,
                max_mb: Some(1),
            }],
            ..SandboxSpec::default()
        };
        let mut g = FsGuard::unopened(&spec);
        f.set_len(9)?;
        settle(&mut g, 0, &f, 5, 100);
        assert!(g.admit(0, (1 << 20) - 4));
        assert!(!g.admit(0, (1 << 20) - 3), "4 bytes were charged");
        Ok(())
    }
}
