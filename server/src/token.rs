//! `--token-file`: the token a client's hello must carry. The file is read
//! on every hello, so replacing it (a token that expired) applies to the
//! next connection without a restart; surrounding white space is ignored.

use std::path::Path;

/// Checks the token a hello offered against the file's. The error is the
/// close reason the client is told.
pub fn check(file: &Path, offered: Option<&[u8]>) -> Result<(), String> {
    let expected = std::fs::read(file).map_err(|e| {
        eprintln!("longconn-server: cannot read the token file {}: {e}", file.display());
        "unauthorized: the server cannot read its token file".to_string()
    })?;
    let expected = expected.trim_ascii();
    match offered {
        None => Err("unauthorized: this server wants a token in the hello (protocol 2)".into()),
        Some(offered) if !same(offered, expected) || expected.is_empty() => Err("unauthorized: wrong token".into()),
        Some(_) => Ok(()),
    }
}

/// Equal, in a time that depends on the lengths only.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_read_on_every_check() {
        let path = std::env::temp_dir().join(format!("longconn-token-{}", std::process::id()));
        std::fs::write(&path, "first\n").unwrap();
        assert_eq!(check(&path, Some(b"first")), Ok(()));
        assert_eq!(check(&path, Some(b"firs")).unwrap_err(), "unauthorized: wrong token");
        assert!(check(&path, None).unwrap_err().contains("wants a token"));
        std::fs::write(&path, "second").unwrap();
        assert!(check(&path, Some(b"first")).is_err(), "a replaced token applies at once");
        assert_eq!(check(&path, Some(b"second")), Ok(()));
        std::fs::write(&path, "\n").unwrap();
        assert!(check(&path, Some(b"")).is_err(), "an empty file lets nobody in");
        std::fs::remove_file(&path).unwrap();
        assert!(check(&path, Some(b"second")).unwrap_err().contains("cannot read its token file"));
    }
}
