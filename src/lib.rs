//! liblongconn: the C ABI over `longconn-core`. Thin wrappers that check
//! their arguments, catch panics and translate between C types and the
//! core; all `unsafe` code of the project lives in this crate, one module
//! per C type: `client` (every `lc_client_*` function), `config`
//! (`lc_config_*`), `connect` (the connect callback and
//! `lc_connect_request_*`), `event` (`lc_event` and the callback types), `runtime`,
//! `log`, `status`, and `boundary` (the panic and pointer macros).
//!
//! Names: functions `lc_<type>_<verb>`, opaque types `lc_<type>`, enum
//! constants `LC_<ENUM>_<VARIANT>`. The header `include/longconn.h` is
//! generated from these files by cbindgen (`make header`).
//!
//! # Safety
//!
//! One contract covers every exported function that takes pointers, so it
//! is written once, here and in the header's preamble (`cbindgen.toml`): a
//! non-NULL pointer must point to a valid object of its type (handles as
//! returned by their `_new` function and not yet freed), buffers must hold
//! `len` readable (or, for outputs, writable) bytes for the call, strings
//! must be NUL-terminated, and out-pointers must be writable. NULL is always
//! detected and reported as `LC_STATUS_NULL_ARGUMENT`.

#![allow(non_camel_case_types)]
#![deny(unsafe_op_in_unsafe_fn)]
#![allow(clippy::missing_safety_doc)]

#[macro_use]
mod boundary;
pub mod client;
pub mod config;
pub mod connect;
pub mod event;
pub mod log;
pub mod runtime;
pub mod status;

#[cfg(test)]
mod header;
