//! The ABI between the agent (host) and a WebAssembly hook (guest) beyond WASI: one versioned import namespace and
//! the numbers both sides must agree on.
//!
//! The host defines these functions in `runtime::hooks::wasm`; the guest imports them in `rollcage-sdk`'s private
//! `sys` module. Both take every name and number from here, so they cannot drift apart. The ABI is append-only:
//! a breaking change gets a new namespace (`rollcage:hook/v2`) and the host keeps serving v1.
//!
//! # `http_get`
//!
//! ```text
//! http_get(url_ptr: i32, url_len: i32, body_ptr: i32, body_cap: i32, body_len_ptr: i32) -> i32
//! ```
//!
//! GET the UTF-8 URL at `url_ptr..url_ptr+url_len`. On a response, the host writes at most `body_cap` bytes of the
//! body to `body_ptr`, writes the body's full length (≤ [`HTTP_MAX_BODY_BYTES`]) as a little-endian `u32` to
//! `body_len_ptr`, and returns the HTTP status (100–599). When the full length exceeds `body_cap` the guest may call
//! again with a larger buffer. A negative return is one of the `HTTP_ERR_*` codes.

/// The import module name (`#[link(wasm_import_module = ...)]` on the guest side).
pub const IMPORT_MODULE: &str = "rollcage:hook/v1";

/// Name of the HTTP GET host function in [`IMPORT_MODULE`].
pub const HTTP_GET: &str = "http_get";

/// The URL is not under any prefix the hook's `sandbox.http` grant names (or the grant is empty).
pub const HTTP_ERR_DENIED: i32 = -1;
/// Connecting, sending or reading failed (refused, reset, timed out, bad response).
pub const HTTP_ERR_IO: i32 = -2;
/// The arguments are invalid: pointers out of bounds, URL not UTF-8 or not an `http://` URL.
pub const HTTP_ERR_BAD_ARGS: i32 = -3;
/// The response body is larger than [`HTTP_MAX_BODY_BYTES`].
pub const HTTP_ERR_TOO_LARGE: i32 = -4;

/// Largest response body the host reads for a guest. Health and config endpoints answer in bytes or kilobytes; the
/// cap keeps a hostile or broken endpoint from growing the agent's memory.
pub const HTTP_MAX_BODY_BYTES: u32 = 1024 * 1024;

/// Longest URL the host accepts (the same as common proxies' request-line limits).
pub const HTTP_MAX_URL_BYTES: u32 = 8 * 1024;

/// The environment variables through which a hook learns its lifecycle context (the shell hooks' names).
pub mod env {
    /// The lifecycle event name, e.g. `ValidateService`.
    pub const LIFECYCLE_EVENT: &str = "LIFECYCLE_EVENT";
    /// The deployment id.
    pub const DEPLOYMENT_ID: &str = "DEPLOYMENT_ID";
    /// The application name.
    pub const APPLICATION_NAME: &str = "APPLICATION_NAME";
    /// The deployment group name.
    pub const DEPLOYMENT_GROUP_NAME: &str = "DEPLOYMENT_GROUP_NAME";
    /// The deployment group id.
    pub const DEPLOYMENT_GROUP_ID: &str = "DEPLOYMENT_GROUP_ID";
}

/// Where the revision is mounted (read-only) inside every wasm hook; it is also the guest's working directory.
pub const REVISION_MOUNT: &str = "/revision";

/// Human-readable name of an `HTTP_ERR_*` code (for messages on both sides).
pub fn http_error_name(code: i32) -> &'static str {
    match code {
        HTTP_ERR_DENIED => "denied by the hook's http grant",
        HTTP_ERR_IO => "I/O error",
        HTTP_ERR_BAD_ARGS => "bad arguments",
        HTTP_ERR_TOO_LARGE => "response body too large",
        _ => "unknown error",
    }
}
