//! WASI 0.2 command components as hooks: the store state, the linker and the call of `wasi:cli/run`.
//!
//! Everything else a component run needs is shared with preview-1 modules and lives in one place each: the grant
//! ([`super::sandbox::builder`], built into a [`WasiCtx`] here instead of a `WasiP1Ctx`), the memory cap
//! ([`MemoryLimiter`]), the timeout, output and outcome ([`super::WasmHooks::run`]), the compile cache
//! ([`super::cache`]).
//!
//! The linker is all of `wasi:cli/command`'s imports (`wasmtime_wasi::p2::add_to_linker_async`), sockets
//! included: a component built by `wasm32-wasip2`, componentize-py or componentize-js imports `wasi:sockets/*`
//! whether or not it uses them, so without them it would not instantiate. What they can do is decided by the
//! [`WasiCtx`]: the sandbox's builder grants no TCP, no UDP, no name lookup and an address check that refuses
//! every address, so each socket call fails with `access-denied` before any system call is made.
//!
//! Read-write grants get the same filesystem guard as preview-1 modules (symlink rule, `max_mb` quota; the
//! decisions in [`super::guard`], the shadowed `wasi:filesystem` and `wasi:io/streams` methods in
//! [`super::guard::component`]); `get-directories` and `open-at` below tell it which handles lead into a grant.
//!
//! The capability audit ([`super::audit`]) sees a component through a few shadowed imports ([`shadow`]): the
//! preopens it is given and each `open-at` under them (path, read/write, the error code), each `read-directory`,
//! the environment it reads, and each socket or name lookup it tries — answered `access-denied` right there, the
//! same answer wasmtime-wasi gives with the network off, so no socket is ever created.
//!
//! `wasi:http` (`types` and `outgoing-handler`) is linked for every component — componentize-js output imports it
//! whether or not the hook fetches anything — and each request is checked against the hook's `sandbox.http` grant
//! before it leaves ([`super::wasi_http`]; with no grant, every request is refused).

use super::audit::{self, Audit, Kind, Verdict};
use super::guard::component::{self as guarded, ComponentGuard};
use super::hook_api::{Lifecycle, LogSinks};
use super::limiter::MemoryLimiter;
use super::outcome::{Phase, RunEnd};
use super::wasi_http::GrantedHttp;
use std::collections::HashMap;
use wasmtime::component::{Component, Linker, Resource, ResourceTable};
use wasmtime::{Store, StoreContextMut};
use wasmtime_wasi::cli::WasiCliView as _;
use wasmtime_wasi::filesystem::WasiFilesystemView as _;
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::p2::bindings::cli::environment::Host as EnvironmentHost;
use wasmtime_wasi::p2::bindings::filesystem::preopens::Host as PreopensHost;
use wasmtime_wasi::p2::bindings::filesystem::types::{
    self as fs, Descriptor, DescriptorFlags, DirectoryEntryStream, HostDescriptor, OpenFlags,
    PathFlags,
};
use wasmtime_wasi::p2::bindings::sockets::ip_name_lookup::ResolveAddressStream;
use wasmtime_wasi::p2::bindings::sockets::network::{
    ErrorCode as NetError, IpAddressFamily, Network,
};
use wasmtime_wasi::p2::{TcpSocket, UdpSocket};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// The WASI 0.2 version whose interfaces wasmtime-wasi 48 defines (older imports match it by semver).
pub(crate) const WASI: &str = "0.2.12";

/// The state of one component hook's store.
pub(crate) struct ComponentState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) http_ctx: WasiHttpCtx,
    /// `wasi:http` under the hook's `sandbox.http` grant.
    pub(crate) http: GrantedHttp,
    /// `rollcage:hook/context`: the lifecycle context of the run.
    pub(crate) lifecycle: Lifecycle,
    /// `rollcage:hook/log`: where its lines go.
    pub(crate) log: LogSinks,
    /// What the hook used and was denied.
    pub(crate) audit: Audit,
    /// The filesystem guard of its read-write grants.
    pub(crate) guard: ComponentGuard,
    /// Guest paths of the descriptors the guest holds, by resource handle.
    pub(crate) paths: HashMap<u32, String>,
    /// The granted host variables the hook was given (recorded when it reads its environment).
    pub(crate) env_granted: Vec<String>,
    pub(crate) env_read: bool,
}

impl WasiView for ComponentState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for ComponentState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http_ctx,
            table: &mut self.table,
            hooks: &mut self.http,
        }
    }
}

/// The component linker: WASI 0.2 (`wasi:cli/command`'s imports, `exit-with-code` included — it is stable in the
/// 0.2.12 WIT wasmtime 48 ships), `wasi:http` under the grant, and `rollcage:hook` ([`super::hook_api`]).
pub(crate) fn linker(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<ComponentState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    shadow(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    super::hook_api::add_to_linker(&mut linker)?;
    Ok(linker)
}

/// The error code of a filesystem call that failed, as the guest receives it (a host fault traps instead).
pub(crate) fn fs_error(
    state: &mut ComponentState,
    e: wasmtime_wasi::p2::FsError,
) -> wasmtime::Result<fs::ErrorCode> {
    fs::Host::convert_error_code(&mut state.filesystem(), e)
}

/// The sandbox's answer to a filesystem error: `access`/`not-permitted` are the grant saying no. Pure.
fn fs_verdict(code: Option<fs::ErrorCode>) -> Verdict {
    match code {
        Some(fs::ErrorCode::Access | fs::ErrorCode::NotPermitted) => Verdict::Denied,
        _ => Verdict::Allowed,
    }
}

fn family_label(family: IpAddressFamily) -> &'static str {
    match family {
        IpAddressFamily::Ipv4 => "ipv4",
        IpAddressFamily::Ipv6 => "ipv6",
    }
}

/// Replace the imports the audit and the filesystem guard watch with wrappers that record and call wasmtime-wasi's
/// own implementation (the sockets ones answer `access-denied` themselves).
fn shadow(linker: &mut Linker<ComponentState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    guarded::shadow(linker)?;
    let mut preopens = linker.instance(&format!("wasi:filesystem/preopens@{WASI}"))?;
    preopens.func_wrap(
        "get-directories",
        |mut store: StoreContextMut<'_, ComponentState>, (): ()| {
            let state = store.data_mut();
            let dirs = PreopensHost::get_directories(&mut state.filesystem())?;
            for (d, name) in &dirs {
                state.paths.insert(d.rep(), name.clone());
            }
            state.guard.fs.preopened(dirs.iter().map(|(d, _)| d.rep()));
            Ok((dirs,))
        },
    )?;
    let mut types = linker.instance(&format!("wasi:filesystem/types@{WASI}"))?;
    types.func_wrap_async(
        "[method]descriptor.open-at",
        |mut store: StoreContextMut<'_, ComponentState>,
         (dir, path_flags, path, oflags, flags): (
            Resource<Descriptor>,
            PathFlags,
            String,
            OpenFlags,
            DescriptorFlags,
        )| {
            Box::new(async move {
                let state = store.data_mut();
                let dir_rep = dir.rep();
                let full =
                    audit::join(state.paths.get(&dir_rep).map_or("?", String::as_str), &path);
                let (kind, what) = if oflags.contains(OpenFlags::DIRECTORY) {
                    (Kind::Dir, "open")
                } else {
                    let write = flags.contains(DescriptorFlags::WRITE)
                        || oflags.contains(OpenFlags::CREATE)
                        || oflags.contains(OpenFlags::TRUNCATE);
                    let read = flags.contains(DescriptorFlags::READ);
                    (Kind::File, audit::access(read, write))
                };
                let truncated =
                    guarded::truncation(state, dir_rep, path_flags, &path, oflags).await;
                let opened = HostDescriptor::open_at(
                    &mut state.filesystem(),
                    dir,
                    path_flags,
                    path,
                    oflags,
                    flags,
                )
                .await;
                let result = match opened {
                    Ok(d) => {
                        state.paths.insert(d.rep(), full.clone());
                        guarded::opened(state, dir_rep, d.rep(), truncated);
                        Ok(d)
                    }
                    Err(e) => Err(fs_error(state, e)?),
                };
                let code = result.as_ref().err().copied();
                let detail = match code {
                    None => format!("{what} {full}"),
                    Some(c) => format!("{what} {full} ({c:?})"),
                };
                state.audit.record(kind, fs_verdict(code), detail);
                Ok((result,))
            })
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.read-directory",
        |mut store: StoreContextMut<'_, ComponentState>, (dir,): (Resource<Descriptor>,)| {
            Box::new(async move {
                let state = store.data_mut();
                let path = state
                    .paths
                    .get(&dir.rep())
                    .cloned()
                    .unwrap_or_else(|| "?".to_owned());
                let result: Result<Resource<DirectoryEntryStream>, fs::ErrorCode> =
                    match HostDescriptor::read_directory(&mut state.filesystem(), dir).await {
                        Ok(s) => Ok(s),
                        Err(e) => Err(fs_error(state, e)?),
                    };
                let code = result.as_ref().err().copied();
                let detail = match code {
                    None => format!("list {path}"),
                    Some(c) => format!("list {path} ({c:?})"),
                };
                state.audit.record(Kind::Dir, fs_verdict(code), detail);
                Ok((result,))
            })
        },
    )?;
    let mut env = linker.instance(&format!("wasi:cli/environment@{WASI}"))?;
    env.func_wrap(
        "get-environment",
        |mut store: StoreContextMut<'_, ComponentState>, (): ()| {
            let state = store.data_mut();
            let vars = EnvironmentHost::get_environment(&mut state.cli())?;
            if !state.env_read {
                state.env_read = true;
                for name in &state.env_granted {
                    state
                        .audit
                        .record(Kind::Env, Verdict::Allowed, format!("read {name}"));
                }
            }
            Ok((vars,))
        },
    )?;
    let mut tcp = linker.instance(&format!("wasi:sockets/tcp-create-socket@{WASI}"))?;
    tcp.func_wrap(
        "create-tcp-socket",
        |mut store: StoreContextMut<'_, ComponentState>, (family,): (IpAddressFamily,)| {
            let detail = format!("tcp socket ({})", family_label(family));
            store
                .data_mut()
                .audit
                .record(Kind::Net, Verdict::Denied, detail);
            Ok((Err::<Resource<TcpSocket>, _>(NetError::AccessDenied),))
        },
    )?;
    let mut udp = linker.instance(&format!("wasi:sockets/udp-create-socket@{WASI}"))?;
    udp.func_wrap_async(
        "create-udp-socket",
        |mut store: StoreContextMut<'_, ComponentState>, (family,): (IpAddressFamily,)| {
            Box::new(async move {
                let detail = format!("udp socket ({})", family_label(family));
                store
                    .data_mut()
                    .audit
                    .record(Kind::Net, Verdict::Denied, detail);
                Ok((Err::<Resource<UdpSocket>, _>(NetError::AccessDenied),))
            })
        },
    )?;
    let mut lookup = linker.instance(&format!("wasi:sockets/ip-name-lookup@{WASI}"))?;
    lookup.func_wrap(
        "resolve-addresses",
        |mut store: StoreContextMut<'_, ComponentState>,
         (_network, name): (Resource<Network>, String)| {
            let detail = format!("name lookup {name}");
            store
                .data_mut()
                .audit
                .record(Kind::Net, Verdict::Denied, detail);
            Ok((Err::<Resource<ResolveAddressStream>, _>(
                NetError::AccessDenied,
            ),))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// Link a compiled component as a command: it must export `wasi:cli/run` (a reactor or a library component is
/// refused here, with wasmtime's message naming the missing export).
pub(crate) fn link(
    linker: &Linker<ComponentState>,
    component: &Component,
) -> wasmtime::Result<CommandPre<ComponentState>> {
    let pre = linker.instantiate_pre(component)?;
    CommandPre::new(pre).map_err(|e| {
        wasmtime::Error::msg(format!(
            "not a `wasi:cli/command` component (a hook must export `wasi:cli/run`): {e:#}"
        ))
    })
}

/// Instantiate and call `wasi:cli/run`. `run` returning its error (a Python exception, a thrown JS error, a Rust
/// guest's failure without an exit code) is [`RunEnd::RunFailed`]; `wasi:cli/exit` arrives as an `I32Exit` error.
pub(crate) async fn call(
    pre: &CommandPre<ComponentState>,
    store: &mut Store<ComponentState>,
) -> RunEnd {
    let command = match pre.instantiate_async(&mut *store).await {
        Ok(c) => c,
        Err(e) => return RunEnd::Error(Phase::Instantiate, e),
    };
    match command.wasi_cli_run().call_run(&mut *store).await {
        Ok(Ok(())) => RunEnd::Returned,
        Ok(Err(())) => RunEnd::RunFailed,
        Err(e) => RunEnd::Error(Phase::Run, e),
    }
}
