//! The raw host imports, in the one versioned namespace shared with the agent through
//! [`rollcage_proto::hostcall`]. Nothing outside this module touches them.
//!
//! They exist for preview-1 modules only (`wasm32-wasip1`): a WASI 0.2 component (`wasm32-wasip2`) cannot import
//! a bare core function (the component linker would refuse the `rollcage:hook/v1` module), and the agent's
//! component linker provides WASI and `wasi:http`. A component's HTTP therefore goes through `wasi:http` under
//! the same grant (`http::get`); off wasm, [`http_get`] answers "unsupported".

#[cfg(all(target_arch = "wasm32", not(target_env = "p2")))]
mod imports {
    // `#[link]` needs a literal; the const assertions below pin it to the shared constants.
    #[link(wasm_import_module = "rollcage:hook/v1")]
    unsafe extern "C" {
        /// See `rollcage_proto::hostcall` for the contract.
        pub fn http_get(
            url_ptr: *const u8,
            url_len: usize,
            body_ptr: *mut u8,
            body_cap: usize,
            body_len_ptr: *mut u32,
        ) -> i32;
    }
}

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

const _: () = assert!(str_eq(
    "rollcage:hook/v1",
    rollcage_proto::hostcall::IMPORT_MODULE
));
const _: () = assert!(str_eq("http_get", rollcage_proto::hostcall::HTTP_GET));

/// Call the host's `http_get`: returns the host's code and the body's full length.
#[cfg(all(target_arch = "wasm32", not(target_env = "p2")))]
pub(crate) fn http_get(url: &str, body: &mut [u8]) -> (i32, u32) {
    let mut len: u32 = 0;
    // SAFETY: every pointer comes from a live Rust borrow with its exact length; the host writes at most
    // `body.len()` bytes into `body` and 4 bytes into `len`, with bounds-checked memory access.
    let code = unsafe {
        imports::http_get(
            url.as_ptr(),
            url.len(),
            body.as_mut_ptr(),
            body.len(),
            &mut len,
        )
    };
    (code, len)
}

/// Off wasm there is no `http_get` to call (a component uses `wasi:http` instead, see `http::get`).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn http_get(_url: &str, _body: &mut [u8]) -> (i32, u32) {
    (i32::MIN, 0)
}
