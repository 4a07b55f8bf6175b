//! File helpers: private files are created 0600, replacements are atomic.

use std::fs::{self, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::CertError;

/// Mode of private key files.
pub const PRIVATE_MODE: u32 = 0o600;
/// Mode of certificates, CRLs and the ledger.
pub const PUBLIC_MODE: u32 = 0o644;
/// Mode of a CA directory created by `init`.
pub const DIR_MODE: u32 = 0o700;

pub(crate) fn read(path: &Path) -> Result<Vec<u8>, CertError> {
    fs::read(path).map_err(|e| CertError::io("read", path, e))
}

pub(crate) fn read_string(path: &Path) -> Result<String, CertError> {
    fs::read_to_string(path).map_err(|e| CertError::io("read", path, e))
}

/// Writes `data` to `path` in place, creating the file with `mode` and fixing
/// the mode of an existing file *before* any content is written.
pub(crate) fn write_with_mode(path: &Path, data: &[u8], mode: u32) -> Result<(), CertError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(|e| CertError::io("create", path, e))?;
    file.set_permissions(Permissions::from_mode(mode))
        .map_err(|e| CertError::io("set permissions of", path, e))?;
    file.write_all(data)
        .map_err(|e| CertError::io("write", path, e))?;
    file.sync_all().map_err(|e| CertError::io("sync", path, e))
}

/// Like [`write_with_mode`] but fails if the file exists (`O_EXCL`).
pub(crate) fn write_new(path: &Path, data: &[u8], mode: u32) -> Result<(), CertError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| CertError::io("create", path, e))?;
    file.set_permissions(Permissions::from_mode(mode))
        .map_err(|e| CertError::io("set permissions of", path, e))?;
    file.write_all(data)
        .map_err(|e| CertError::io("write", path, e))?;
    file.sync_all().map_err(|e| CertError::io("sync", path, e))
}

/// Replaces `path` atomically: writes a temporary file in the same directory,
/// syncs it, then renames it over `path`. Readers see the old or the new
/// content, never a partial file.
pub(crate) fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), CertError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".to_string());
    let tmp = dir.join(format!(
        ".{name}.tmp.{}.{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let result = write_new(&tmp, data, mode)
        .and_then(|()| fs::rename(&tmp, path).map_err(|e| CertError::io("replace", path, e)));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
        return result;
    }
    // Make the rename durable; failure here is not fatal for correctness.
    if let Ok(d) = fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Group/world permission bits of a file, if any are set.
pub(crate) fn loose_mode(path: &Path) -> Option<u32> {
    let mode = fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then_some(mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_are_0600_even_if_they_existed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.pem");
        fs::write(&p, b"old").unwrap();
        fs::set_permissions(&p, Permissions::from_mode(0o644)).unwrap();
        write_with_mode(&p, b"new", PRIVATE_MODE).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(fs::read(&p).unwrap(), b"new");
        assert!(loose_mode(&p).is_none());
    }

    #[test]
    fn atomic_replace() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("crl.pem");
        write_atomic(&p, b"one", PUBLIC_MODE).unwrap();
        write_atomic(&p, b"two", PUBLIC_MODE).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary files left behind");
        assert!(write_new(&p, b"x", PUBLIC_MODE).is_err());
    }
}
