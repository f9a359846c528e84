//! File-system helpers shared by every module that writes files.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

/// Writes `contents` to `path` so that a crash at any moment leaves either the
/// old file or the new one, never a torn mix: the bytes go to a temporary file
/// in the same folder (same file system, so the rename is atomic), are flushed
/// to disk, and the temporary file is renamed over the target.
pub fn atomic_write(path: &Path, contents: &[u8]) -> io::Result<()> {
    atomic_write_with(path, |file| file.write_all(contents))
}

/// Copies `from` to `to` the way `atomic_write` writes: a crash leaves the
/// old `to` or the whole copy. Streams the bytes, so a large file (a
/// checkpoint's optimizer state) is never held in memory whole.
pub fn atomic_copy(from: &Path, to: &Path) -> io::Result<()> {
    let mut source = File::open(from)?;
    atomic_write_with(to, |file| io::copy(&mut source, file).map(drop))
}

/// [`atomic_write`] for contents made while writing (files too large to hold
/// in memory): `write` fills the temporary file; on any error, its own or
/// the file system's, the temporary file is removed and the target is untouched.
pub fn atomic_write_with<E: From<io::Error>>(
    path: &Path,
    write: impl FnOnce(&mut File) -> Result<(), E>,
) -> Result<(), E> {
    let folder = folder_of(path);
    let file_name =
        path.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp_path = folder.join(tmp_name);

    let result = (|| {
        let mut file = File::create(&tmp_path)?;
        write(&mut file)?;
        file.sync_all()?;
        fs::rename(&tmp_path, path)?;
        // The rename itself is only durable once the folder entry is synced.
        if let Ok(dir) = File::open(folder) {
            let _ = dir.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp_path);
    }
    result
}

/// The folder a file at `path` goes in (`.` for a bare file name).
fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Whether [`atomic_write`] could put a file at `path`, asked before the work
/// that makes its contents: `path` is not a folder, and its folder exists and
/// may be written in. The error says what is wrong in words that need `path`
/// before them.
pub fn check_writable(path: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    if path.is_dir() {
        return Err(io::Error::new(io::ErrorKind::IsADirectory, "is a folder; name a file to write"));
    }
    let folder = folder_of(path);
    let problem = |kind, what: String| Err(io::Error::new(kind, what));
    match fs::metadata(folder) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            problem(io::ErrorKind::NotFound, format!("the folder {} does not exist", folder.display()))
        }
        Err(error) => problem(error.kind(), format!("cannot reach {}: {error}", folder.display())),
        Ok(metadata) if !metadata.is_dir() => {
            problem(io::ErrorKind::NotADirectory, format!("{} is not a folder", folder.display()))
        }
        Ok(_) => {
            let folder_name = std::ffi::CString::new(folder.as_os_str().as_bytes())
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "the path holds a NUL byte"))?;
            // The permission bits alone would not say it for root, ACLs or a read-only mount.
            // SAFETY: `folder_name` is a NUL-terminated string that outlives the call.
            if unsafe { libc::access(folder_name.as_ptr(), libc::W_OK | libc::X_OK) } == 0 {
                return Ok(());
            }
            let error = io::Error::last_os_error();
            problem(error.kind(), format!("cannot write in {}: {error}", folder.display()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_contents_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a.txt");
        atomic_write(&target, b"old").unwrap();
        atomic_write(&target, b"new").unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "new");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a.txt")]);
    }

    #[test]
    fn copies_whole_files_over_old_ones() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("a.bin"), dir.path().join("b.bin"));
        let bytes: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        fs::write(&from, &bytes).unwrap();
        fs::write(&to, b"old").unwrap();
        atomic_copy(&from, &to).unwrap();
        assert_eq!(fs::read(&to).unwrap(), bytes);
        assert!(atomic_copy(&dir.path().join("missing"), &to).is_err());
        assert_eq!(fs::read(&to).unwrap(), bytes, "a failed copy leaves the old file");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2, "no temporary file left");
    }

    #[test]
    fn says_what_keeps_a_file_from_being_written_before_it_is_made() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        check_writable(&dir.path().join("a.png")).unwrap();
        let problem = |path: &Path| check_writable(path).unwrap_err().to_string();
        let missing = dir.path().join("no/such");
        assert_eq!(problem(&missing.join("a.png")), format!("the folder {} does not exist", missing.display()));
        assert_eq!(problem(dir.path()), "is a folder; name a file to write");
        let file = dir.path().join("a.txt");
        fs::write(&file, "").unwrap();
        assert_eq!(problem(&file.join("a.png")), format!("{} is not a folder", file.display()));
        let read_only = dir.path().join("read-only");
        fs::create_dir(&read_only).unwrap();
        fs::set_permissions(&read_only, fs::Permissions::from_mode(0o555)).unwrap();
        // SAFETY: geteuid only reads the process's user id.
        if unsafe { libc::geteuid() } != 0 {
            assert!(problem(&read_only.join("a.png")).starts_with("cannot write in"), "root may write anywhere");
        }
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2, "nothing was written to find out");
    }

    #[test]
    fn fails_cleanly_when_folder_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("missing").join("a.txt");
        assert!(atomic_write(&target, b"x").is_err());
    }
}
