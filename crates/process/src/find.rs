//! Finding an executable by name: `$PATH`, then the usual system directories.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Directories searched after `$PATH`: tools such as `ip` and `runc` live in sbin directories, which a
/// non-login root shell (or CI) may not have on its `$PATH`.
pub const SYSTEM_BIN_DIRS: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// `path` (a `$PATH` value, possibly absent) followed by [`SYSTEM_BIN_DIRS`] not already in it.
fn with_system_dirs(path: Option<OsString>) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = path
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for dir in SYSTEM_BIN_DIRS {
        if !dirs.iter().any(|existing| existing == Path::new(dir)) {
            dirs.push(PathBuf::from(dir));
        }
    }
    dirs
}

/// This process's `$PATH` extended with the system directories, for child processes that look up
/// further tools themselves (containerd runs `runc` and its shim by name).
pub fn path_with_system_dirs() -> OsString {
    let dirs = with_system_dirs(std::env::var_os("PATH"));
    // Joining fails only for a directory containing ':', which split_paths never yields and the
    // system list does not hold.
    std::env::join_paths(dirs).unwrap_or_else(|_| SYSTEM_BIN_DIRS.join(":").into())
}

/// The executable `name` on `$PATH` or in the system directories, first match; `None` if there is none.
pub fn find_program(name: &str) -> Option<PathBuf> {
    find_program_in(name, std::env::var_os("PATH"))
}

fn find_program_in(name: &str, path: Option<OsString>) -> Option<PathBuf> {
    let dirs = std::env::join_paths(with_system_dirs(path)).ok()?;
    which::which_in(name, Some(dirs), "/").ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn file(dir: &Path, name: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn path_comes_first_and_only_executables_count() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        file(a.path(), "tool-x", 0o644);
        let wanted = file(b.path(), "tool-x", 0o755);
        let later = tempfile::tempdir().unwrap();
        file(later.path(), "tool-x", 0o755);
        let path = std::env::join_paths([a.path(), b.path(), later.path()]).unwrap();
        assert_eq!(find_program_in("tool-x", Some(path)), Some(wanted));
    }

    #[test]
    fn system_directories_are_searched_without_a_path() {
        // `sh` is in /bin or /usr/bin on every machine this runs on.
        let found = find_program_in("sh", None).expect("sh in a system directory");
        assert!(
            SYSTEM_BIN_DIRS
                .iter()
                .any(|dir| found.parent() == Some(Path::new(dir))),
            "{}",
            found.display()
        );
        assert_eq!(find_program_in("no-such-tool-calico-rs", None), None);
    }

    #[test]
    fn the_extended_path_keeps_path_order_and_adds_each_system_dir_once() {
        let dirs = with_system_dirs(Some("/opt/x:/usr/bin".into()));
        assert_eq!(dirs[0], Path::new("/opt/x"));
        assert_eq!(dirs[1], Path::new("/usr/bin"));
        assert_eq!(dirs.len(), 2 + SYSTEM_BIN_DIRS.len() - 1);
    }
}
