//! Where the `longconn-server` binary is, for tests and benchmarks.
//!
//! `LONGCONN_SERVER` names it; by default it is the one built next to the
//! running test or benchmark (`target/<profile>/longconn-server`), so build
//! it first: `cargo build -p longconn-server` (add `--release` for benchmarks;
//! `make test` and `make bench` do).

use std::path::PathBuf;

pub fn server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("LONGCONN_SERVER") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the path of the running test");
    // target/<profile>/deps/<test>-<hash> -> target/<profile>/longconn-server
    let profile_dir =
        exe.parent().and_then(|deps| deps.parent()).expect("a test binary lives in target/<profile>/deps");
    let path = profile_dir.join("longconn-server");
    assert!(
        path.exists(),
        "{} does not exist: build it with `cargo build -p longconn-server` (with --release for benchmarks) \
         or set LONGCONN_SERVER",
        path.display()
    );
    path
}
