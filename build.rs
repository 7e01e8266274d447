//! Generates the C header from the C ABI in `src/` with cbindgen, into
//! `OUT_DIR`: a build never writes to the source tree.
//!
//! The committed `include/longconn.h` must equal what this generates; a
//! unit test (`src/header.rs`, run by `make test`) checks it, and
//! `make header` refreshes the committed copy.

use std::env;
use std::path::PathBuf;

fn main() {
    let crate_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-changed=build.rs");

    let mut config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml is valid");
    let version = env::var("CARGO_PKG_VERSION").expect("cargo sets CARGO_PKG_VERSION");
    config.after_includes = Some(format!("\n#define LONGCONN_VERSION \"{version}\""));
    let bindings = match cbindgen::Builder::new().with_crate(&crate_dir).with_config(config).generate() {
        Ok(b) => b,
        Err(e) => panic!("cbindgen could not generate the header: {e}"),
    };
    bindings.write_to_file(out_dir.join("longconn.h"));
}
