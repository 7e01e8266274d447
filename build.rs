//! Generates `include/longconn.h` from the C ABI in `src/ffi/` with cbindgen.
//!
//! The header is committed; it is rewritten only when its content changes, so
//! a build leaves the tree clean unless the C API really changed (CI checks
//! this with `git diff --exit-code include/longconn.h`).

use std::env;
use std::fs;
use std::path::PathBuf;

fn main() {
    let crate_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-changed=build.rs");

    let mut config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml is valid");
    let version = env::var("CARGO_PKG_VERSION").expect("cargo sets CARGO_PKG_VERSION");
    config.after_includes = Some(format!("\n#define LONGCONN_VERSION \"{version}\""));
    let bindings = match cbindgen::Builder::new().with_crate(&crate_dir).with_config(config).generate() {
        Ok(b) => b,
        Err(e) => panic!("cbindgen could not generate the header: {e}"),
    };
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let header = crate_dir.join("include").join("longconn.h");
    if fs::read(&header).ok().as_deref() != Some(&generated[..]) {
        fs::create_dir_all(header.parent().unwrap()).expect("create include/");
        fs::write(&header, &generated).expect("write include/longconn.h");
    }
}
