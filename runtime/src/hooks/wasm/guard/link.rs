//! The guard's place in the linker: wasmtime-wasi's preview-1 functions that make links, open or close
//! descriptors, or grow files are shadowed (`Linker::allow_shadowing`) by versions that apply [`FsGuard`]'s rules
//! and then call the real implementation — the public functions wiggle generates in
//! `wasmtime_wasi::p1::wasi_snapshot_preview1` (same ABI, same `WasiP1Ctx`), so wasmtime's own checks and errno
//! mapping still run unchanged. Only the ABI glue that wiggle writes for each import (find the `memory` export,
//! pass the hostcall fuel) is repeated here.
//!
//! The same wrappers feed the capability audit (`audit`): each open (path, read/write, allowed or denied),
//! each directory listing, the environment handed over (`environ_get`).
//!
//! Cost: a write through a descriptor of a read-write grant costs one `fstat` more (the size before; the growth
//! is read from the position after), `pwrite` and resizing two; every other write (stdout, stderr) one hash-map
//! lookup.

use super::{check_symlink_target, same_directory, worst_growth};
use crate::hooks::wasm::HookState;
use crate::hooks::wasm::audit::{self, Kind, Verdict};
use wasmtime::{AsContextMut as _, Caller, Extern, Linker};
use wasmtime_wasi::p1::types::{Errno, Fd, Filetype, Lookupflags, Oflags, Rights};
use wasmtime_wasi::p1::wasi_snapshot_preview1::{self as p1, WasiSnapshotPreview1 as _};
use wiggle::{GuestMemory, GuestPtr};

/// The preview-1 import module.
const MODULE: &str = "wasi_snapshot_preview1";

/// `errno` as the guest receives it.
fn errno(e: Errno) -> i32 {
    i32::from(u16::from(e))
}

/// Guest memory and the store's state, as wiggle's glue gets them; also hands the call's hostcall fuel to the
/// WASI context (it bounds how much a single call may copy out of the guest).
fn split<'a>(
    caller: &'a mut Caller<'_, HookState>,
) -> wasmtime::Result<(GuestMemory<'a>, &'a mut HookState)> {
    let fuel = caller.as_context_mut().hostcall_fuel();
    let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
        wasmtime::bail!("missing required memory export");
    };
    let (mem, state) = memory.data_and_store_mut(caller);
    state.wasi.set_hostcall_fuel(fuel);
    Ok((GuestMemory::Unshared(mem), state))
}

/// Guest-chosen text at (`ptr`, `len`), lossily; `None` when out of bounds (the real call then reports it).
fn guest_str(mem: &GuestMemory<'_>, ptr: i32, len: i32) -> Option<String> {
    let p = GuestPtr::<str>::new((ptr.cast_unsigned(), len.cast_unsigned()));
    mem.as_cow_str(p).ok().map(|s| s.into_owned())
}

/// The size of the file behind `fd`, or `None` for anything that is not a regular file.
async fn file_size(state: &mut HookState, mem: &mut GuestMemory<'_>, fd: u32) -> Option<u64> {
    let st = state.wasi.fd_filestat_get(mem, Fd::from(fd)).await.ok()?;
    (st.filetype == Filetype::RegularFile).then_some(st.size)
}

/// Whether the name at (`ptr`, `len`) under `dirfd` is itself a symlink (not followed); `false` when it cannot be
/// looked up (the real call then reports why).
async fn is_symlink(
    state: &mut HookState,
    mem: &mut GuestMemory<'_>,
    dirfd: i32,
    ptr: i32,
    len: i32,
) -> bool {
    let path = GuestPtr::<str>::new((ptr.cast_unsigned(), len.cast_unsigned()));
    state
        .wasi
        .path_filestat_get(mem, Fd::from(dirfd), Lookupflags::empty(), path)
        .await
        .is_ok_and(|st| st.filetype == Filetype::SymbolicLink)
}

/// Total length of a `ciovec` array; `None` when it cannot be read (the real call reports that).
fn iovec_len(mem: &GuestMemory<'_>, iovs: i32, count: i32) -> Option<u64> {
    let mut total = 0u64;
    for i in 0..count.cast_unsigned() {
        // A `ciovec` is { buf: u32, buf_len: u32 }.
        let at = iovs
            .cast_unsigned()
            .checked_add(i.checked_mul(8)?)?
            .checked_add(4)?;
        let len: u32 = mem.read(GuestPtr::<u32>::new(at)).ok()?;
        total = total.saturating_add(u64::from(len));
    }
    Some(total)
}

/// Replace the preview-1 functions the guard needs to see. Call after `p1::add_to_linker_async`.
pub(crate) fn shadow(linker: &mut Linker<HookState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    linker.func_wrap_async(
        MODULE,
        "path_symlink",
        |mut caller: Caller<'_, HookState>,
         (target, target_len, dirfd, link, link_len): (i32, i32, i32, i32, i32)| {
            Box::new(async move {
                let (mut mem, state) = split(&mut caller)?;
                if let Some(t) = guest_str(&mem, target, target_len)
                    && let Err(why) = check_symlink_target(&t)
                {
                    let name = guest_str(&mem, link, link_len).unwrap_or_default();
                    state
                        .guard
                        .refuse_symlink(dirfd.cast_unsigned(), &name, &t, why);
                    return Ok(errno(Errno::Perm));
                }
                p1::path_symlink(
                    &mut state.wasi,
                    &mut mem,
                    target,
                    target_len,
                    dirfd,
                    link,
                    link_len,
                )
                .await
            })
        },
    )?;
    linker.func_wrap_async(
        MODULE,
        "path_link",
        |mut caller: Caller<'_, HookState>,
         (old_fd, old_flags, old, old_len, new_fd, new, new_len): (
            i32,
            i32,
            i32,
            i32,
            i32,
            i32,
            i32,
        )| {
            Box::new(async move {
                let (mut mem, state) = split(&mut caller)?;
                // Without following: is the name itself a symlink? (wasmtime refuses SYMLINK_FOLLOW here anyway.)
                if is_symlink(state, &mut mem, old_fd, old, old_len).await {
                    let from = guest_str(&mem, old, old_len).unwrap_or_default();
                    let to = guest_str(&mem, new, new_len).unwrap_or_default();
                    state
                        .guard
                        .refuse_hard_link(new_fd.cast_unsigned(), &from, &to);
                    return Ok(errno(Errno::Perm));
                }
                p1::path_link(
                    &mut state.wasi,
                    &mut mem,
                    old_fd,
                    old_flags,
                    old,
                    old_len,
                    new_fd,
                    new,
                    new_len,
                )
                .await
            })
        },
    )?;
    linker.func_wrap_async(
        MODULE,
        "path_rename",
        |mut caller: Caller<'_, HookState>,
         (old_fd, old, old_len, new_fd, new, new_len): (i32, i32, i32, i32, i32, i32)| {
            Box::new(async move {
                let (mut mem, state) = split(&mut caller)?;
                let from = guest_str(&mem, old, old_len).unwrap_or_default();
                let to = guest_str(&mem, new, new_len).unwrap_or_default();
                // Within one directory a symlink keeps its meaning (the `current -> releases/v3` switch); moved
                // elsewhere, a relative target made by someone else may point out.
                if !same_directory(old_fd.cast_unsigned(), &from, new_fd.cast_unsigned(), &to)
                    && is_symlink(state, &mut mem, old_fd, old, old_len).await
                {
                    state.guard.refuse_move(new_fd.cast_unsigned(), &from, &to);
                    return Ok(errno(Errno::Perm));
                }
                p1::path_rename(
                    &mut state.wasi,
                    &mut mem,
                    old_fd,
                    old,
                    old_len,
                    new_fd,
                    new,
                    new_len,
                )
                .await
            })
        },
    )?;
    linker.func_wrap_async(
        MODULE,
        "path_open",
        |mut caller: Caller<'_, HookState>,
         (dirfd, dirflags, path, path_len, oflags, base, inheriting, fdflags, out): (
            i32,
            i32,
            i32,
            i32,
            i32,
            i64,
            i64,
            i32,
            i32,
        )| {
            Box::new(async move {
                let (mut mem, state) = split(&mut caller)?;
                let dir = dirfd.cast_unsigned();
                let grant = state.guard.grant_of(dir);
                let truncates = u16::try_from(oflags)
                    .is_ok_and(|f| Oflags::from_bits_truncate(f).contains(Oflags::TRUNC));
                // What `O_TRUNC` will give back: the size of the file it empties, if it is one.
                let mut freed = 0u64;
                if grant.is_some() && truncates {
                    let p = GuestPtr::<str>::new((path.cast_unsigned(), path_len.cast_unsigned()));
                    let flags = u32::try_from(dirflags)
                        .map_or(Lookupflags::empty(), Lookupflags::from_bits_truncate);
                    if let Ok(st) = state
                        .wasi
                        .path_filestat_get(&mut mem, Fd::from(dirfd), flags, p)
                        .await
                        && st.filetype == Filetype::RegularFile
                    {
                        freed = st.size;
                    }
                }
                let rc = p1::path_open(
                    &mut state.wasi,
                    &mut mem,
                    dirfd,
                    dirflags,
                    path,
                    path_len,
                    oflags,
                    base,
                    inheriting,
                    fdflags,
                    out,
                )
                .await?;
                let rel = guest_str(&mem, path, path_len).unwrap_or_default();
                record_open(state, dir, &rel, oflags, base, rc);
                if rc == 0
                    && let Ok(new) = mem.read(GuestPtr::<u32>::new(out.cast_unsigned()))
                {
                    state.guard.opened(dir, new);
                    state.paths.opened(dir, &rel, new);
                    if let Some(g) = grant {
                        state.guard.grew(g, -i128::from(freed));
                    }
                }
                Ok(rc)
            })
        },
    )?;
    linker.func_wrap_async(
        MODULE,
        "fd_close",
        |mut caller: Caller<'_, HookState>, (fd,): (i32,)| {
            Box::new(async move {
                let (mut mem, state) = split(&mut caller)?;
                let rc = p1::fd_close(&mut state.wasi, &mut mem, fd).await?;
                if rc == 0 {
                    state.guard.closed(fd.cast_unsigned());
                    state.paths.closed(fd.cast_unsigned());
                }
                Ok(rc)
            })
        },
    )?;
    linker.func_wrap_async(
        MODULE,
        "fd_readdir",
        |mut caller: Caller<'_, HookState>,
         (fd, buf, buf_len, cookie, used): (i32, i32, i32, i64, i32)| {
            Box::new(async move {
                let (mut mem, state) = split(&mut caller)?;
                let rc = p1::fd_readdir(&mut state.wasi, &mut mem, fd, buf, buf_len, cookie, used)
                    .await?;
                // A listing is read in several calls; the first one (cookie 0) is the one to record.
                if cookie == 0 {
                    let path = state.paths.of(fd.cast_unsigned());
                    let detail = match rc {
                        0 => format!("list {path}"),
                        rc => format!("list {path} (errno {rc})"),
                    };
                    state.audit.record(Kind::Dir, verdict(rc), detail);
                }
                Ok(rc)
            })
        },
    )?;
    linker.func_wrap_async(
        MODULE,
        "environ_get",
        |mut caller: Caller<'_, HookState>, (environ, buf): (i32, i32)| {
            Box::new(async move {
                let (mut mem, state) = split(&mut caller)?;
                let rc = p1::environ_get(&mut state.wasi, &mut mem, environ, buf)?;
                if rc == 0 && !state.env_read {
                    state.env_read = true;
                    for name in &state.env_granted {
                        state
                            .audit
                            .record(Kind::Env, Verdict::Allowed, format!("read {name}"));
                    }
                }
                Ok(rc)
            })
        },
    )?;
    linker.func_wrap_async(
        MODULE,
        "fd_renumber",
        |mut caller: Caller<'_, HookState>, (from, to): (i32, i32)| {
            Box::new(async move {
                let (mut mem, state) = split(&mut caller)?;
                let rc = p1::fd_renumber(&mut state.wasi, &mut mem, from, to).await?;
                if rc == 0 {
                    state
                        .guard
                        .renumbered(from.cast_unsigned(), to.cast_unsigned());
                    state
                        .paths
                        .renumbered(from.cast_unsigned(), to.cast_unsigned());
                }
                Ok(rc)
            })
        },
    )?;
    linker.func_wrap_async(
        MODULE,
        "fd_write",
        |mut caller: Caller<'_, HookState>, (fd, iovs, count, out): (i32, i32, i32, i32)| {
            Box::new(async move {
                let (mut mem, state) = split(&mut caller)?;
                let Some(g) = state.guard.grant_of(fd.cast_unsigned()) else {
                    return p1::fd_write(&mut state.wasi, &mut mem, fd, iovs, count, out).await;
                };
                let pos = state.wasi.fd_tell(&mut mem, Fd::from(fd)).ok();
                let before = match (
                    file_size(state, &mut mem, fd.cast_unsigned()).await,
                    pos,
                    iovec_len(&mem, iovs, count),
                ) {
                    (Some(size), Some(pos), Some(len)) => {
                        if !state.guard.admit(g, worst_growth(size, pos, len)) {
                            return Ok(errno(Errno::Dquot));
                        }
                        Some(size)
                    }
                    _ => None,
                };
                let rc = p1::fd_write(&mut state.wasi, &mut mem, fd, iovs, count, out).await?;
                // The position after the write is where it ended — wasmtime moves an appending descriptor's
                // position to the new end of file — so it gives the growth without a second `fstat`.
                if let Some(size) = before
                    && let Ok(end) = state.wasi.fd_tell(&mut mem, Fd::from(fd))
                {
                    state.guard.grew(g, i128::from(end.saturating_sub(size)));
                }
                Ok(rc)
            })
        },
    )?;
    linker.func_wrap_async(
        MODULE,
        "fd_pwrite",
        |mut caller: Caller<'_, HookState>,
         (fd, iovs, count, offset, out): (i32, i32, i32, i64, i32)| {
            Box::new(async move {
                let (mut mem, state) = split(&mut caller)?;
                let Some(g) = state.guard.grant_of(fd.cast_unsigned()) else {
                    return p1::fd_pwrite(&mut state.wasi, &mut mem, fd, iovs, count, offset, out)
                        .await;
                };
                let before = match (
                    file_size(state, &mut mem, fd.cast_unsigned()).await,
                    iovec_len(&mem, iovs, count),
                ) {
                    (Some(size), Some(len)) => {
                        if !state
                            .guard
                            .admit(g, worst_growth(size, offset.cast_unsigned(), len))
                        {
                            return Ok(errno(Errno::Dquot));
                        }
                        Some(size)
                    }
                    _ => None,
                };
                let rc =
                    p1::fd_pwrite(&mut state.wasi, &mut mem, fd, iovs, count, offset, out).await?;
                charge(state, &mut mem, g, fd, before).await;
                Ok(rc)
            })
        },
    )?;
    linker.func_wrap_async(
        MODULE,
        "fd_filestat_set_size",
        |mut caller: Caller<'_, HookState>, (fd, size): (i32, i64)| {
            Box::new(async move {
                let (mut mem, state) = split(&mut caller)?;
                let Some(g) = state.guard.grant_of(fd.cast_unsigned()) else {
                    return p1::fd_filestat_set_size(&mut state.wasi, &mut mem, fd, size).await;
                };
                let before = file_size(state, &mut mem, fd.cast_unsigned()).await;
                if let Some(old) = before
                    && !state
                        .guard
                        .admit(g, size.cast_unsigned().saturating_sub(old))
                {
                    return Ok(errno(Errno::Dquot));
                }
                let rc = p1::fd_filestat_set_size(&mut state.wasi, &mut mem, fd, size).await?;
                charge(state, &mut mem, g, fd, before).await;
                Ok(rc)
            })
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// The grant's answer to a call that returned `rc`: the capability errnos (`EPERM`, `ENOTCAPABLE`, `EACCES`) are
/// the sandbox saying no; anything else (0, `ENOENT`, …) got past it. Pure.
fn verdict(rc: i32) -> Verdict {
    if [Errno::Perm, Errno::Notcapable, Errno::Acces]
        .into_iter()
        .any(|e| errno(e) == rc)
    {
        Verdict::Denied
    } else {
        Verdict::Allowed
    }
}

/// Record a `path_open` of `rel` under `dir` that returned `rc`.
fn record_open(state: &mut HookState, dir: u32, rel: &str, oflags: i32, base: i64, rc: i32) {
    let oflags = u16::try_from(oflags).map_or(Oflags::empty(), Oflags::from_bits_truncate);
    let rights = Rights::from_bits_truncate(base.cast_unsigned());
    let path = state.paths.path(dir, rel);
    let (kind, what) = if oflags.contains(Oflags::DIRECTORY) {
        (Kind::Dir, "open")
    } else {
        let write =
            rights.contains(Rights::FD_WRITE) || oflags.intersects(Oflags::CREAT | Oflags::TRUNC);
        (
            Kind::File,
            audit::access(rights.contains(Rights::FD_READ), write),
        )
    };
    let detail = match rc {
        0 => format!("{what} {path}"),
        rc => format!("{what} {path} (errno {rc})"),
    };
    state.audit.record(kind, verdict(rc), detail);
}

/// After a write or resize through `fd` (grant `g`): charge what the file's size changed by. When the size before
/// was unknown (the call was on something that is not a file) nothing is charged.
async fn charge(
    state: &mut HookState,
    mem: &mut GuestMemory<'_>,
    g: usize,
    fd: i32,
    before: Option<u64>,
) {
    let Some(before) = before else {
        return;
    };
    if let Some(after) = file_size(state, mem, fd.cast_unsigned()).await {
        state.guard.grew(g, i128::from(after) - i128::from(before));
    }
}

#[cfg(test)]
mod tests {
    use super::super::{FsGuard, TargetRefusal};
    use super::*;

    #[test]
    fn errno_values_are_the_wasi_numbers() {
        // wasi_snapshot_preview1.witx: perm = 63, dquot = 19.
        assert_eq!(errno(Errno::Perm), 63);
        assert_eq!(errno(Errno::Dquot), 19);
    }

    #[test]
    fn the_refusal_kinds_describe_themselves() {
        let mut g = FsGuard::default();
        g.refuse_symlink(3, "a", "/etc", TargetRefusal::Absolute);
        assert!(g.violation().unwrap_or_default().contains("absolute"));
    }
}
