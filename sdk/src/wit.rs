//! The `rollcage:hook` imports of a WASI 0.2 component (`wit/hook.wit`, world `imports`): the lifecycle context
//! ([`crate::Context::current`]) and structured log lines ([`crate::log`]). One binding for both; a preview-1
//! module has neither import and reads its environment instead.

wit_bindgen::generate!({ path: "wit/hook.wit", world: "rollcage:hook/imports" });
