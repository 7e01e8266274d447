//! The committed header is the one the source generates.
//!
//! `build.rs` writes the generated header to `OUT_DIR`. This test compares
//! it with `include/longconn.h`; with `LONGCONN_WRITE_HEADER=1` (what
//! `make header` sets) it writes the generated one there instead.

const GENERATED: &str = include_str!(concat!(env!("OUT_DIR"), "/longconn.h"));

#[test]
fn committed_header_matches_the_source() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("include/longconn.h");
    if std::env::var_os("LONGCONN_WRITE_HEADER").is_some_and(|v| v == "1") {
        std::fs::write(&path, GENERATED).expect("write include/longconn.h");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(committed == GENERATED, "include/longconn.h is stale: run `make header` and commit it");
}
