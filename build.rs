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

    let version = env::var("CARGO_PKG_VERSION").expect("cargo sets CARGO_PKG_VERSION");
    let part = |name: &str| env::var(name).expect("cargo sets the version parts");
    let (major, minor, patch) =
        (part("CARGO_PKG_VERSION_MAJOR"), part("CARGO_PKG_VERSION_MINOR"), part("CARGO_PKG_VERSION_PATCH"));
    // The shared object's SONAME: programs record liblongconn.so.<major> and
    // find the installed liblongconn.so.<major>.<minor>.<patch> through it.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,liblongconn.so.{major}");
    link_soname_in_target_dir(&out_dir, &major);

    let mut config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml is valid");
    config.after_includes = Some(format!(
        "\n#define LONGCONN_VERSION \"{version}\"\n\
         #define LONGCONN_VERSION_MAJOR {major}\n\
         #define LONGCONN_VERSION_MINOR {minor}\n\
         #define LONGCONN_VERSION_PATCH {patch}\n\
         /* (major << 16) | (minor << 8) | patch, to compare with lc_version_number(). */\n\
         #define LONGCONN_VERSION_NUM ((LONGCONN_VERSION_MAJOR << 16) | (LONGCONN_VERSION_MINOR << 8) | LONGCONN_VERSION_PATCH)"
    ));
    let bindings = match cbindgen::Builder::new().with_crate(&crate_dir).with_config(config).generate() {
        Ok(b) => b,
        Err(e) => panic!("cbindgen could not generate the header: {e}"),
    };
    bindings.write_to_file(out_dir.join("longconn.h"));
}

/// Programs linked against `target/<profile>/liblongconn.so` look for its
/// SONAME, `liblongconn.so.<major>`, at run time: a relative symlink next to
/// the library (made before the library itself exists) lets in-tree builds
/// run with an rpath, as `make install` does for installed ones.
fn link_soname_in_target_dir(out_dir: &std::path::Path, major: &str) {
    // OUT_DIR is target/<profile>/build/longconn-<hash>/out.
    let Some(profile_dir) = out_dir.ancestors().nth(3) else { return };
    let link = profile_dir.join(format!("liblongconn.so.{major}"));
    if std::fs::read_link(&link).is_err() {
        let _ = std::fs::remove_file(&link);
        let _ = std::os::unix::fs::symlink("liblongconn.so", &link);
    }
}
