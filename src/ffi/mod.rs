//! The C ABI: thin wrappers that check their arguments, catch panics and
//! translate between C types and the core. All `unsafe` code of the library
//! lives in this module.
//!
//! Names: functions `lc_<type>_<verb>`, opaque types `lc_<type>`, enum
//! constants `LC_<ENUM>_<VARIANT>`. The header `include/longconn.h` is
//! generated from these files by cbindgen (see `build.rs`).

#![allow(non_camel_case_types)]

#[macro_use]
mod boundary;
pub mod client;
pub mod config;
pub mod event;
pub mod log;
pub mod status;
