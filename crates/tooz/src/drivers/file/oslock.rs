//! Open-file-description record locks (`F_OFD_SETLK`): whole-file POSIX record locks owned by
//! an open file rather than a process. They conflict with the classic `fcntl`/`lockf` locks
//! Python tooz takes, exclude threads of one process from each other, and are released by the
//! kernel when the file is closed, including when its process dies.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// Exclusive (write) or shared (read) lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Exclusive,
    Shared,
}

fn request(kind: libc::c_int) -> libc::flock {
    // SAFETY: `flock` is a plain C struct for which all-zero bytes are a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = 0;
    fl.l_len = 0; // the whole file
    fl
}

fn fcntl(file: &File, cmd: libc::c_int, fl: &mut libc::flock) -> io::Result<()> {
    loop {
        // SAFETY: the descriptor is open for the lifetime of `file` and `fl` is a valid,
        // exclusively borrowed `flock` that the kernel may read and write.
        let rc = unsafe { libc::fcntl(file.as_raw_fd(), cmd, fl as *mut libc::flock) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

fn lock_type(kind: Kind) -> libc::c_int {
    match kind {
        Kind::Exclusive => libc::F_WRLCK,
        Kind::Shared => libc::F_RDLCK,
    }
}

/// Tries once; `false` if another open file holds a conflicting lock.
pub(super) fn try_lock(file: &File, kind: Kind) -> io::Result<bool> {
    match fcntl(file, libc::F_OFD_SETLK, &mut request(lock_type(kind))) {
        Ok(()) => Ok(true),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Waits in the kernel until the lock is granted. Blocks the calling thread.
pub(super) fn lock_wait(file: &File, kind: Kind) -> io::Result<()> {
    fcntl(file, libc::F_OFD_SETLKW, &mut request(lock_type(kind)))
}

/// Releases the lock held through `file`.
pub(super) fn unlock(file: &File) -> io::Result<()> {
    fcntl(file, libc::F_OFD_SETLK, &mut request(libc::F_UNLCK))
}

/// Who holds a record lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Owner {
    /// An open file description (an `F_OFD_SETLK` lock, as this driver takes).
    OpenFile,
    /// A process, through a classic `fcntl`/`lockf` lock (as Python tooz takes).
    Process(libc::pid_t),
}

/// Who, other than `file`, holds a lock that would conflict with an exclusive one.
pub(super) fn conflicting_owner(file: &File) -> io::Result<Option<Owner>> {
    let mut fl = request(libc::F_WRLCK);
    fcntl(file, libc::F_OFD_GETLK, &mut fl)?;
    if fl.l_type == libc::F_UNLCK as libc::c_short {
        return Ok(None);
    }
    // The kernel reports -1 as the pid of an open-file-description lock.
    Ok(Some(match fl.l_pid {
        -1 => Owner::OpenFile,
        pid => Owner::Process(pid),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_open_files_exclude_each_other_in_one_process() {
        let dir = std::env::temp_dir().join(format!("tooz-oslock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("l");
        let open = || {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .unwrap()
        };
        let (a, b) = (open(), open());
        assert!(try_lock(&a, Kind::Exclusive).unwrap());
        assert!(!try_lock(&b, Kind::Exclusive).unwrap());
        assert!(!try_lock(&b, Kind::Shared).unwrap());
        assert_eq!(conflicting_owner(&b).unwrap(), Some(Owner::OpenFile));
        unlock(&a).unwrap();
        assert_eq!(conflicting_owner(&b).unwrap(), None);
        assert!(try_lock(&a, Kind::Shared).unwrap());
        assert!(try_lock(&b, Kind::Shared).unwrap());
        drop(a);
        drop(b);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
