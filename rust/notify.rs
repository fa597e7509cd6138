//! The NOTIFY -> eventfd map.
//!
// H:1200 This is the seed the whole project grew from.  When a guest kicks a
// virtqueue it makes a NOTIFY hypercall with the queue's address.  Returning
// to the Launcher for every kick would be slow; instead the Launcher attaches
// an eventfd to each queue's address, and the host signals that eventfd and
// lets the guest carry on, while the device's own thread wakes up.
//
// The map is read on every notification and written a handful of times per
// boot, so it is published read-copy-update style: a writer copies the
// array, adds its entry and swaps the new array in atomically; readers load
// whatever array is current without a lock and without allocating, and the
// old array is freed when its last reader lets go.  arc-swap gives exactly
// those semantics, safely.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum NotifyError {
    #[error("address 0 means \"no notification\" and cannot be attached")]
    ZeroAddress,
    #[error("file descriptor {0} is not open")]
    BadFd(i32),
    #[error("file descriptor {0} is not an eventfd")]
    NotEventfd(i32),
    #[error("cannot duplicate file descriptor {0}: {1}")]
    Dup(i32, std::io::Error),
}

impl NotifyError {
    pub fn errno(&self) -> i32 {
        match self {
            NotifyError::ZeroAddress | NotifyError::NotEventfd(_) => libc::EINVAL,
            NotifyError::BadFd(_) => libc::EBADF,
            NotifyError::Dup(_, e) => e.raw_os_error().unwrap_or(libc::ENOMEM),
        }
    }
}

pub struct Entry {
    pub addr: u32,
    pub fd: OwnedFd,
}

#[derive(Default)]
pub struct NotifyMap {
    current: ArcSwap<Vec<Arc<Entry>>>,
    writers: Mutex<()>,
}

fn is_eventfd(fd: i32) -> bool {
    match std::fs::read_link(format!("/proc/self/fd/{fd}")) {
        Ok(p) => p.to_string_lossy() == "anon_inode:[eventfd]",
        Err(_) => false,
    }
}

impl NotifyMap {
    pub fn new() -> Self {
        Self::default()
    }

    /// H:1210 The reader: no lock, no allocation.  The first entry for the
    /// address wins; its eventfd's counter goes up by one.
    pub fn signal(&self, addr: u32) -> bool {
        let map = self.current.load();
        for e in map.iter() {
            if e.addr == addr {
                let one: u64 = 1;
                // SAFETY: writing 8 bytes from a valid u64 to an eventfd we
                // own a duplicate of; a failed write (counter overflow) only
                // means the reader already has a wake-up pending.
                unsafe { libc::write(e.fd.as_raw_fd(), &one as *const u64 as *const libc::c_void, 8) };
                return true;
            }
        }
        false
    }

    /// H:1220 The writer: copy, append, publish.  With `replace` an existing
    /// entry for the address is dropped first (the original could only
    /// append, which left a reset device deaf; see abi-devices.md 5.6).
    pub fn attach(&self, addr: u32, fd: i32, replace: bool) -> Result<(), NotifyError> {
        if addr == 0 {
            return Err(NotifyError::ZeroAddress);
        }
        // SAFETY: fcntl(F_GETFD) on an arbitrary integer only asks whether it
        // is an open descriptor.
        if fd < 0 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return Err(NotifyError::BadFd(fd));
        }
        if !is_eventfd(fd) {
            return Err(NotifyError::NotEventfd(fd));
        }
        // SAFETY: fd was just checked to be open; we only borrow it to dup.
        let owned = unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned().map_err(|e| NotifyError::Dup(fd, e))?;
        let _w = self.writers.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.current.load_full();
        let mut new: Vec<Arc<Entry>> = old.iter().filter(|e| !(replace && e.addr == addr)).cloned().collect();
        new.push(Arc::new(Entry { addr, fd: owned }));
        self.current.store(Arc::new(new));
        Ok(())
    }

    /// Remove every entry for `addr`; returns how many there were.
    pub fn detach(&self, addr: u32) -> usize {
        let _w = self.writers.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.current.load_full();
        let new: Vec<Arc<Entry>> = old.iter().filter(|e| e.addr != addr).cloned().collect();
        let removed = old.len() - new.len();
        self.current.store(Arc::new(new));
        removed
    }

    pub fn len(&self) -> usize {
        self.current.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eventfd() -> i32 {
        // SAFETY: plain syscall wrapper.
        unsafe { libc::eventfd(0, 0) }
    }

    fn read_counter(fd: i32) -> u64 {
        let mut v: u64 = 0;
        // SAFETY: reading 8 bytes into a local u64 from an eventfd.
        let n = unsafe { libc::read(fd, &mut v as *mut u64 as *mut libc::c_void, 8) };
        assert_eq!(n, 8);
        v
    }

    #[test]
    fn attach_signal_first_match_wins() {
        let m = NotifyMap::new();
        let a = eventfd();
        let b = eventfd();
        m.attach(0x1000, a, false).unwrap();
        m.attach(0x1000, b, false).unwrap();
        assert!(m.signal(0x1000));
        assert!(!m.signal(0x2000));
        assert_eq!(read_counter(a), 1);
        m.attach(0x1000, b, true).unwrap();
        assert!(m.signal(0x1000));
        assert_eq!(read_counter(b), 1);
        assert_eq!(m.detach(0x1000), 1);
        assert!(!m.signal(0x1000));
    }

    #[test]
    fn errors() {
        let m = NotifyMap::new();
        assert_eq!(m.attach(0, eventfd(), false).unwrap_err().errno(), libc::EINVAL);
        assert_eq!(m.attach(1, 9999, false).unwrap_err().errno(), libc::EBADF);
        assert_eq!(m.attach(1, 0, false).unwrap_err().errno(), libc::EINVAL);
    }
}
