//! Network namespaces: an open namespace file, and running code inside it on a dedicated thread.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use nix::sched::{CloneFlags, setns};

use crate::NetlinkError;

/// An open network namespace (holding its file keeps the namespace alive).
#[derive(Debug)]
pub struct Netns {
    file: File,
    path: PathBuf,
}

impl Netns {
    /// Opens a namespace file such as `/var/run/netns/NAME` or `/proc/PID/ns/net`.
    pub fn open(path: &Path) -> Result<Netns, NetlinkError> {
        let file = File::open(path)
            .map_err(|e| NetlinkError::Namespace(format!("open netns {}: {e}", path.display())))?;
        Ok(Netns {
            file,
            path: path.to_path_buf(),
        })
    }

    /// The calling thread's network namespace.
    pub fn current() -> Result<Netns, NetlinkError> {
        Netns::open(Path::new("/proc/thread-self/ns/net"))
    }

    /// The path this namespace was opened from (for messages; for [`Netns::current`] it is thread-relative).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on a dedicated OS thread that has entered this namespace, and returns its result.
    ///
    /// setns() changes only the calling thread, so the caller's thread never switches namespace; the helper
    /// thread ends with `f`. A panic in `f` is passed on to the caller.
    pub fn run<T: Send, F: FnOnce() -> T + Send>(&self, f: F) -> Result<T, NetlinkError> {
        std::thread::scope(|scope| {
            let worker = std::thread::Builder::new()
                .name("netns".to_string())
                .spawn_scoped(scope, || {
                    setns(&self.file, CloneFlags::CLONE_NEWNET).map_err(|e| {
                        NetlinkError::Namespace(format!(
                            "enter netns {}: {}",
                            self.path.display(),
                            e.desc()
                        ))
                    })?;
                    Ok(f())
                })
                .map_err(|e| {
                    NetlinkError::Namespace(format!(
                        "start a thread for netns {}: {e}",
                        self.path.display()
                    ))
                })?;
            match worker.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }
}

impl AsFd for Netns {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}
