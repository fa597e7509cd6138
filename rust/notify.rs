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
// old array is freed once its last reader has let go.  `rcu` holds that
// algorithm (over arc-swap in production); this file holds what the map
// stores and the original's rules for attaching.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

use thiserror::Error;

#[cfg(not(loom))]
pub mod bench;
pub mod rcu;

use rcu::{Arc, Rcu};

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
    /// The errno the original's LHREQ_EVENTFD returned for this failure.
    pub fn errno(&self) -> i32 {
        match self {
            NotifyError::ZeroAddress | NotifyError::NotEventfd(_) => libc::EINVAL,
            NotifyError::BadFd(_) => libc::EBADF,
            NotifyError::Dup(_, e) => e.raw_os_error().unwrap_or(libc::ENOMEM),
        }
    }
}

/// Anything the map can hold.
pub trait Keyed {
    /// What a lookup needs from an entry, copied into the array itself so
    /// that a lookup reads nothing but the array (see `Slot`).
    type Hot: Copy + Send + Sync;
    fn addr(&self) -> u32;
    fn hot(&self) -> Self::Hot;
}

/// One attachment: notifications of `addr` go to (our duplicate of) `fd`.
pub struct Entry {
    pub addr: u32,
    pub fd: OwnedFd,
}

impl Keyed for Entry {
    type Hot = RawFd;
    fn addr(&self) -> u32 {
        self.addr
    }
    fn hot(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Add one to an eventfd's counter, waking whoever blocks reading it.
fn signal_fd(fd: RawFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live u64.  `fd` is the raw number of an
    // `OwnedFd` held by the array the caller is reading, so it stays open for
    // the whole lookup.  The only failure an eventfd write can have here is
    // the counter reaching 2^64-2, some 10^19 unread notifications away.
    unsafe { libc::write(fd, &one as *const u64 as *const libc::c_void, 8) };
}

/// An array element: the address and the hot part inline, the entry itself
/// behind an `Arc`.
///
// H:1215 Why not just `Vec<Arc<Entry>>`: copying the array bumps every
// entry's reference count, and a reference count lives next to the data it
// counts.  A lookup scanning the entries would then keep missing in its
// cache while a device thread attaches, for no reason but sharing a cache
// line with the counter.  With the addresses inline the lookup reads one
// contiguous, never-written array, whatever writers do.
pub struct Slot<E: Keyed> {
    addr: u32,
    hot: E::Hot,
    entry: Arc<E>,
}

impl<E: Keyed> Clone for Slot<E> {
    fn clone(&self) -> Self {
        Slot { addr: self.addr, hot: self.hot, entry: self.entry.clone() }
    }
}

/// The production publisher; loom builds swap in its checkable twin.
#[cfg(not(loom))]
pub type Cell<T> = rcu::ArcSwapCell<T>;
#[cfg(loom)]
pub type Cell<T> = rcu::CountedCell<T>;

/// An ordered array of attachments, published read-copy-update.
pub struct KeyedMap<E: Keyed + Send + Sync> {
    rcu: Rcu<Vec<Slot<E>>, Cell<Vec<Slot<E>>>>,
}

impl<E: Keyed + Send + Sync> Default for KeyedMap<E> {
    fn default() -> Self {
        KeyedMap { rcu: Rcu::new(Vec::new()) }
    }
}

impl<E: Keyed + Send + Sync> KeyedMap<E> {
    /// H:1210 The reader, on the vCPU's NOTIFY path: no lock, no allocation.
    /// The first entry for the address wins, as in the original (whose
    /// duplicates were never removed, so the oldest kept answering).
    #[inline]
    pub fn lookup<R>(&self, addr: u32, f: impl FnOnce(E::Hot) -> R) -> Option<R> {
        self.rcu.read(|v| v.iter().find(|s| s.addr == addr).map(|s| f(s.hot)))
    }

    /// H:1220 Copy, append, publish.  With `replace`, entries already there
    /// for the address are left out of the copy: the original could only
    /// append, so a device that was reset and re-attached stayed bound to its
    /// first eventfd (abi-devices.md 5.6).
    pub fn attach(&self, entry: E, replace: bool) {
        let slot = Slot { addr: entry.addr(), hot: entry.hot(), entry: Arc::new(entry) };
        let _ = self.rcu.update(|old| {
            let mut new: Vec<Slot<E>> = Vec::with_capacity(old.len() + 1);
            new.extend(old.iter().filter(|s| !(replace && s.addr == slot.addr)).cloned());
            new.push(slot);
            Ok::<_, ()>((new, ()))
        });
    }

    /// Remove every entry for `addr`; returns how many there were.  When it
    /// returns, no reader can still signal them (the update waited out a
    /// grace period), so closing their eventfds afterwards is safe.
    pub fn detach(&self, addr: u32) -> usize {
        self.rcu
            .update(|old| {
                if !old.iter().any(|s| s.addr == addr) {
                    // Nothing to remove: leave the published array alone.
                    return Err(0);
                }
                let new: Vec<Slot<E>> = old.iter().filter(|s| s.addr != addr).cloned().collect();
                let n = old.len() - new.len();
                Ok((new, n))
            })
            .unwrap_or_else(|n| n)
    }

    pub fn len(&self) -> usize {
        self.rcu.read(|v| v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A handle that lets arc-swap's `Cache` find the map's `ArcSwap`.
#[cfg(not(loom))]
pub struct MapHandle<E: Keyed + Send + Sync>(pub std::sync::Arc<KeyedMap<E>>);

#[cfg(not(loom))]
impl<E: Keyed + Send + Sync> std::ops::Deref for MapHandle<E> {
    type Target = arc_swap::ArcSwap<Vec<Slot<E>>>;
    fn deref(&self) -> &Self::Target {
        self.0.rcu.cell().arc_swap()
    }
}

/// H:1262 The vCPU's own reader.  A lookup through `KeyedMap::lookup`
/// borrows arc-swap's per-thread debt slot, a handful of atomic operations:
/// about twice what an uncontended mutex costs.  But there is only one
/// reader, the vCPU thread, and it has natural quiet moments (between two
/// passes of its run loop, and whenever it is not running at all).  So it
/// keeps a reference to the current array in an arc-swap `Cache`: a lookup is
/// then one relaxed load to see whether the array changed, plus the scan.
/// The held reference is what a writer's grace period waits for (H:1250), so
/// the vCPU refreshes the cache at every pass of its run loop and drops it
/// whenever `run` returns; a writer therefore waits at most one time slice,
/// and never for a vCPU that is not running.
#[cfg(not(loom))]
pub struct CachedReader<E: Keyed + Send + Sync> {
    cache: arc_swap::cache::Cache<MapHandle<E>, std::sync::Arc<Vec<Slot<E>>>>,
}

#[cfg(not(loom))]
impl<E: Keyed + Send + Sync> CachedReader<E> {
    pub fn new(map: std::sync::Arc<KeyedMap<E>>) -> Self {
        CachedReader { cache: arc_swap::cache::Cache::new(MapHandle(map)) }
    }

    /// Look `addr` up in the current array (refreshing the cache if a writer
    /// published a new one).
    #[inline]
    pub fn lookup<R>(&mut self, addr: u32, f: impl FnOnce(E::Hot) -> R) -> Option<R> {
        self.cache.load().iter().find(|s| s.addr == addr).map(|s| f(s.hot))
    }

    /// A quiet moment: let go of an array a writer has replaced.
    #[inline]
    pub fn refresh(&mut self) {
        let _ = self.cache.load();
    }
}

/// The vCPU's reader of the NOTIFY map.
#[cfg(not(loom))]
pub struct NotifyReader(CachedReader<Entry>);

#[cfg(not(loom))]
impl NotifyReader {
    /// Signal the eventfd attached to `addr`, if any (first match wins).
    #[inline]
    pub fn signal(&mut self, addr: u32) -> bool {
        self.0.lookup(addr, signal_fd).is_some()
    }

    #[inline]
    pub fn refresh(&mut self) {
        self.0.refresh()
    }
}

fn is_eventfd(fd: i32) -> bool {
    // An eventfd is an anonymous inode whose /proc link names its kind.
    match std::fs::read_link(format!("/proc/self/fd/{fd}")) {
        Ok(p) => p.to_string_lossy() == "anon_inode:[eventfd]",
        Err(_) => false,
    }
}

/// The guest's NOTIFY -> eventfd map.
#[derive(Default)]
pub struct NotifyMap {
    map: std::sync::Arc<KeyedMap<Entry>>,
}

impl NotifyMap {
    pub fn new() -> Self {
        Self::default()
    }

    /// H:1205 Signal the eventfd attached to `addr`, if any; false if none
    /// is.  This is the vCPU's side of a kick, called from the run loop
    /// (H:1290): find the address in the current array without a lock
    /// (H:1210), and add one to the eventfd's counter.  That write wakes the
    /// queue's thread in the Launcher (L:213), and the guest carries on at
    /// once; it never waits for the device.
    #[inline]
    pub fn signal(&self, addr: u32) -> bool {
        self.map.lookup(addr, signal_fd).is_some()
    }

    /// H:1225 LHREQ_EVENTFD, with the original's checks in the original's
    /// order; the bus calls it when a device starts (L:212).  The map keeps
    /// its own duplicate of `fd`, so the caller may close theirs; the
    /// duplicate is closed when the last array holding it goes, which the
    /// grace period (H:1250) makes safe against a reader still signalling
    /// it.
    pub fn attach(&self, addr: u32, fd: i32, replace: bool) -> Result<(), NotifyError> {
        if addr == 0 {
            return Err(NotifyError::ZeroAddress);
        }
        // SAFETY: fcntl(F_GETFD) on an arbitrary integer only asks whether it
        // is an open descriptor; it touches no memory.
        if fd < 0 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return Err(NotifyError::BadFd(fd));
        }
        if !is_eventfd(fd) {
            return Err(NotifyError::NotEventfd(fd));
        }
        // SAFETY: fd was just checked to be open and we only borrow it for
        // the duration of the dup.  (If another thread closes it in between,
        // the dup fails with EBADF, which is reported.)
        let owned = unsafe { BorrowedFd::borrow_raw(fd) }
            .try_clone_to_owned()
            .map_err(|e| NotifyError::Dup(fd, e))?;
        self.map.attach(Entry { addr, fd: owned }, replace);
        Ok(())
    }

    pub fn detach(&self, addr: u32) -> usize {
        self.map.detach(addr)
    }

    /// A caching reader for the vCPU (H:1262).
    #[cfg(not(loom))]
    pub fn reader(&self) -> NotifyReader {
        NotifyReader(CachedReader::new(self.map.clone()))
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(all(test, not(loom)))]
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
