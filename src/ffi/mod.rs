//! The C ABI: thin wrappers that check their arguments, catch panics and
//! translate between C types and the core. All `unsafe` code of the library
//! lives in this module.
//!
//! Names: functions `lc_<type>_<verb>`, opaque types `lc_<type>`, enum
//! constants `LC_<ENUM>_<VARIANT>`. The header `include/longconn.h` is
//! generated from these files by cbindgen (see `build.rs`).
//!
//! # Safety
//!
//! One contract covers every exported function that takes pointers, so it
//! is written here once instead of on each: a non-NULL pointer must point to
//! a valid object of its type (handles as returned by their `_new` function
//! and not yet freed), buffers must hold `len` readable bytes, strings must
//! be NUL-terminated, and out-pointers must be writable. NULL is always
//! detected and reported as `LC_STATUS_NULL_ARGUMENT`.

#![allow(non_camel_case_types)]
#![deny(unsafe_op_in_unsafe_fn)]
#![allow(clippy::missing_safety_doc)]

#[macro_use]
mod boundary;
pub mod client;
pub mod config;
pub mod event;
pub mod log;
pub mod status;
