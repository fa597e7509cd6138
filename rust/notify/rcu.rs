//! Read-copy-update publication of an immutable value, generic over the
//! mechanism that publishes it.
//!
// H:1230 The eventfd map is read on every NOTIFY by the vCPU thread and
// written a handful of times per boot by device threads.  The original kept
// it as an array behind an RCU pointer: a writer copies the array, adds its
// entry, publishes the copy and waits for a grace period before freeing the
// old one, while readers never wait.  `Rcu` below is that algorithm with the
// publication step left open (`Publish`), because we want to check it two
// ways:
//
//  * in production the pointer lives in an `arc_swap::ArcSwap`, which is fast
//    and well tested but not instrumented for loom;
//  * under `--cfg loom` it lives in `CountedCell`, a deliberately plain
//    pointer-plus-reader-count that loom can explore exhaustively.
//
// Both give the same contract, which is all `Rcu` relies on: `read` sees
// either the old or the new value, never blocks and never allocates; `publish`
// returns the old value only when no reader can still be looking at it.

#[cfg(loom)]
pub(crate) use loom::sync::{Arc, Mutex};
#[cfg(not(loom))]
pub(crate) use std::sync::{Arc, Mutex};

/// How a value is published to lock-free readers.
pub trait Publish<T>: Send + Sync {
    fn new(init: Arc<T>) -> Self;

    /// Run `f` on the value current at the time of the call.  Must take no
    /// lock and allocate nothing: this is the vCPU's NOTIFY path.
    fn read<R>(&self, f: impl FnOnce(&T) -> R) -> R;

    /// The current value, as an owned reference (writer side only).
    fn current(&self) -> Arc<T>;

    /// Make `new` current.  Returns the previous value once every reader
    /// that might have seen it has finished with it (a grace period), so the
    /// caller holds the last reference and dropping it frees it.
    fn publish(&self, new: Arc<T>) -> Arc<T>;
}

/// A value published read-copy-update style; writers are serialised.
pub struct Rcu<T, P: Publish<T>> {
    cell: P,
    writers: Mutex<()>,
    _value: std::marker::PhantomData<fn() -> T>,
}

impl<T, P: Publish<T>> Rcu<T, P> {
    /// The publishing cell itself (for a reader that caches, see
    /// `notify::CachedReader`).
    pub fn cell(&self) -> &P {
        &self.cell
    }

    pub fn new(init: T) -> Self {
        Rcu { cell: P::new(Arc::new(init)), writers: Mutex::new(()), _value: std::marker::PhantomData }
    }

    /// The reader: no lock, no allocation, no waiting on writers.
    #[inline]
    pub fn read<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        self.cell.read(f)
    }

    /// H:1240 The writer: under the writers' lock (so that two updates
    /// cannot both copy the same old value and lose one of their changes),
    /// build the new value from the current one, publish it, wait out the
    /// grace period, and free the old value.  `f` may refuse by returning an
    /// error, which leaves the published value untouched.
    pub fn update<R, E>(&self, f: impl FnOnce(&T) -> Result<(T, R), E>) -> Result<R, E> {
        let _w = self.writers.lock().unwrap_or_else(|e| e.into_inner());
        let cur = self.cell.current();
        let (new, out) = f(&cur)?;
        // Our own reference must not count as a reader in the grace period.
        drop(cur);
        let old = self.cell.publish(Arc::new(new));
        drop(old);
        Ok(out)
    }
}

/// The production publisher.
#[cfg(not(loom))]
pub struct ArcSwapCell<T>(arc_swap::ArcSwap<T>);

#[cfg(not(loom))]
impl<T> ArcSwapCell<T> {
    pub fn arc_swap(&self) -> &arc_swap::ArcSwap<T> {
        &self.0
    }
}

#[cfg(not(loom))]
impl<T: Send + Sync> Publish<T> for ArcSwapCell<T> {
    fn new(init: Arc<T>) -> Self {
        ArcSwapCell(arc_swap::ArcSwap::new(init))
    }

    /// H:1235 The reader in production, on every NOTIFY.  The whole point
    /// of the design is what this does not do: it takes no lock a writer
    /// could hold, so a device thread attaching its eventfd never stalls
    /// the guest, and it does not write the array's reference count, which
    /// would make every vCPU lookup bounce a cache line with the writers.
    #[inline]
    fn read<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        // A `Guard` borrows a per-thread debt slot instead of touching the
        // reference count; nothing is allocated after the thread's first load.
        let g = self.0.load();
        f(&g)
    }

    fn current(&self) -> Arc<T> {
        self.0.load_full()
    }

    fn publish(&self, new: Arc<T>) -> Arc<T> {
        // H:1250 The grace period.  A reader's `Guard` may hold the old value
        // without a reference count (a "debt"), but `swap` pays every debt
        // on the value it removes, turning each one into a real reference
        // before it returns, and no new reader can reach the old value after
        // the swap.  So from here on the reference count is exact, and when
        // it falls to our single reference nobody is reading the old array
        // any more: in particular no reader is about to signal an eventfd
        // that a detach has just removed.  Readers hold a value only for one
        // scan, so this wait is short.
        let old = self.0.swap(new);
        let mut spins = 0u32;
        while Arc::strong_count(&old) > 1 {
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        old
    }
}

/// A pointer plus a count of readers inside `read`: the simplest correct
/// grace-period scheme, written with primitives loom can model.
///
// H:1260 This is the loom-checkable twin of `ArcSwapCell`.  A reader
// announces itself in `readers`, then loads the pointer; a writer swaps the
// pointer, then waits until `readers` is zero.  The writer reads `readers`
// with a read-modify-write (adding 0), not a plain load, because an RMW
// always sees the latest value of the counter: if it sees no reader, any
// reader that announces itself later does so with an RMW that reads the
// writer's, so it is ordered after the swap and loads the new pointer.  (The
// same argument with plain sequentially consistent loads is correct in C++
// but loom models SeqCst only as acquire/release, and under that model it
// reported the plain-load version as a race.)  Production does not use this
// cell: one shared counter means a busy reader can keep a writer waiting
// indefinitely, and every read writes to a shared cache line; arc-swap has
// neither problem.
pub struct CountedCell<T> {
    ptr: atomic::AtomicPtr<T>,
    readers: atomic::AtomicUsize,
}

#[cfg(loom)]
use loom::sync::atomic;
#[cfg(not(loom))]
use std::sync::atomic;

// SAFETY: the cell owns one strong reference to a `T` that is shared with
// readers on other threads, exactly like an `Arc<T>`, so it is Send and Sync
// under the same bounds as `Arc<T>`.
unsafe impl<T: Send + Sync> Send for CountedCell<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Sync for CountedCell<T> {}

impl<T: Send + Sync> Publish<T> for CountedCell<T> {
    fn new(init: Arc<T>) -> Self {
        CountedCell {
            ptr: atomic::AtomicPtr::new(Arc::into_raw(init) as *mut T),
            readers: atomic::AtomicUsize::new(0),
        }
    }

    fn read<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        use atomic::Ordering::{AcqRel, Acquire, Release};
        self.readers.fetch_add(1, AcqRel);
        let p = self.ptr.load(Acquire);
        // SAFETY: `p` came from `Arc::into_raw` and the cell's reference to
        // it is only given up by `publish` after `readers` has been seen at
        // zero following the swap; we are counted in `readers` until after
        // `f` returns (see H:1260), so the value is alive for the whole call.
        let r = f(unsafe { &*p });
        self.readers.fetch_sub(1, Release);
        r
    }

    fn current(&self) -> Arc<T> {
        // Writers are serialised by `Rcu`, so nobody can retire the current
        // value while we take a reference to it.
        let p = self.ptr.load(atomic::Ordering::Acquire);
        // SAFETY: `p` is the live value owned by the cell (see above); adding
        // a strong count and wrapping it gives us our own reference.
        unsafe {
            Arc::increment_strong_count(p);
            Arc::from_raw(p)
        }
    }

    fn publish(&self, new: Arc<T>) -> Arc<T> {
        let old = self.ptr.swap(Arc::into_raw(new) as *mut T, atomic::Ordering::AcqRel);
        while self.readers.fetch_add(0, atomic::Ordering::AcqRel) != 0 {
            #[cfg(loom)]
            loom::thread::yield_now();
            #[cfg(not(loom))]
            std::thread::yield_now();
        }
        // SAFETY: `old` came from `Arc::into_raw`, the cell no longer refers
        // to it, and no reader is using it any more: we hand its reference on.
        unsafe { Arc::from_raw(old) }
    }
}

impl<T> Drop for CountedCell<T> {
    fn drop(&mut self) {
        let p = self.ptr.load(atomic::Ordering::Acquire);
        // SAFETY: the cell owns one reference to its current value; `&mut
        // self` means no reader is active.
        drop(unsafe { Arc::from_raw(p) });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn appends<P: Publish<Vec<u32>> + 'static>() {
        let r = Arc::new(Rcu::<Vec<u32>, P>::new(Vec::new()));
        let writers: Vec<_> = (0..4u32)
            .map(|t| {
                let r = r.clone();
                std::thread::spawn(move || {
                    for k in 0..200 {
                        r.update(|old| {
                            let mut v = old.clone();
                            v.push(t * 1000 + k);
                            Ok::<_, ()>((v, ()))
                        })
                        .unwrap();
                    }
                })
            })
            .collect();
        let mut last = 0;
        while last < 800 {
            // Lengths seen by a reader never go backwards.
            let n = r.read(|v| v.len());
            assert!(n >= last);
            last = n;
        }
        for w in writers {
            w.join().unwrap();
        }
        let mut all = r.read(|v| v.clone());
        all.sort_unstable();
        let mut want: Vec<u32> = (0..4).flat_map(|t| (0..200).map(move |k| t * 1000 + k)).collect();
        want.sort_unstable();
        assert_eq!(all, want);
    }

    #[test]
    fn concurrent_appends_arcswap() {
        appends::<ArcSwapCell<Vec<u32>>>();
    }

    #[test]
    fn concurrent_appends_counted() {
        appends::<CountedCell<Vec<u32>>>();
    }

    #[test]
    fn refused_update_changes_nothing() {
        let r = Rcu::<Vec<u32>, ArcSwapCell<Vec<u32>>>::new(vec![1]);
        assert_eq!(r.update(|_| Err::<(Vec<u32>, ()), _>("no")), Err("no"));
        assert_eq!(r.read(|v| v.clone()), vec![1]);
    }
}

// H:1270 What the loom model below proves, and what it does not.
//
// It runs the real `Rcu` algorithm (copy under the writers' lock, publish,
// grace period, free) over `CountedCell`, with one reader thread looking
// values up while writer threads append, and loom tries every interleaving
// (and every weak-memory outcome its model allows).  In each it checks that:
//   * a reader sees a whole array that some writer published (never a torn or
//     freed one: the array's memory is a loom `UnsafeCell`, so a free that is
//     not ordered after a reader's access is reported as a data race);
//   * appends are never lost: the final array holds every writer's entry;
//   * a reader's view never goes back to an older array;
//   * every array ever published is freed exactly once (a drop counter), and
//     by the time `update` returns the array it replaced has been freed;
//   * nothing leaks (loom checks every `Arc`).
//
// It does not prove anything about arc-swap's internals: production swaps the
// publisher for `ArcSwapCell`, whose only obligations are the same two (old or
// new value for readers; `publish` returns after the last reader of the old
// value).  Those rest on arc-swap's documented debt-paying on `swap`, its own
// test suite, and on the non-loom stress tests here and in tests/.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::cell::UnsafeCell;
    use loom::sync::atomic::{AtomicUsize, Ordering};

    /// An array that reports its accesses and its death to loom.
    struct Tracked {
        entries: UnsafeCell<Vec<u32>>,
        freed: Arc<AtomicUsize>,
        created: Arc<AtomicUsize>,
    }

    impl Tracked {
        fn new(v: Vec<u32>, freed: &Arc<AtomicUsize>, created: &Arc<AtomicUsize>) -> Self {
            created.fetch_add(1, Ordering::Relaxed);
            Tracked { entries: UnsafeCell::new(v), freed: freed.clone(), created: created.clone() }
        }
        fn get(&self) -> Vec<u32> {
            // SAFETY: loom checks this shared access against the exclusive
            // access in `drop`; the contents are never mutated otherwise.
            self.entries.with(|p| unsafe { (*p).clone() })
        }
    }

    // SAFETY: the cell's contents are only ever read through shared
    // references after construction; the one exclusive access is `drop`,
    // and loom reports it if it races with a read.
    unsafe impl Sync for Tracked {}

    impl Drop for Tracked {
        fn drop(&mut self) {
            self.entries.with_mut(|_| ());
            self.freed.fetch_add(1, Ordering::Relaxed);
        }
    }

    type Map = Rcu<Tracked, CountedCell<Tracked>>;

    fn append(m: &Map, x: u32) {
        m.update(|old| {
            let mut v = old.get();
            v.push(x);
            Ok::<_, ()>((Tracked::new(v, &old.freed, &old.created), ()))
        })
        .unwrap();
    }

    #[test]
    fn attach_races_with_lookups() {
        // The writers' grace-period loops spin, which makes the unbounded
        // state space impractically large; four preemptions per execution
        // (loom's usual bound) finish in seconds and cover every bug that
        // needs up to four unlucky context switches to show.
        let mut model = loom::model::Builder::new();
        model.preemption_bound = Some(4);
        model.check(|| {
            let freed = Arc::new(AtomicUsize::new(0));
            let created = Arc::new(AtomicUsize::new(0));
            let m = Arc::new(Map::new(Tracked::new(vec![], &freed, &created)));

            let writers: Vec<_> = [1u32, 2]
                .into_iter()
                .map(|x| {
                    let m = m.clone();
                    let freed = freed.clone();
                    loom::thread::spawn(move || {
                        let before = freed.load(Ordering::Relaxed);
                        append(&m, x);
                        // The replaced array is gone before update returns.
                        assert!(freed.load(Ordering::Relaxed) > before);
                    })
                })
                .collect();

            // The reader: two lookups; the second never sees less.
            let a = m.read(|t| t.get());
            let b = m.read(|t| t.get());
            assert!(a.len() <= 2 && b.len() >= a.len());
            assert_eq!(&b[..a.len()], &a[..]);

            for w in writers {
                w.join().unwrap();
            }
            let mut last = m.read(|t| t.get());
            last.sort_unstable();
            assert_eq!(last, vec![1, 2], "an append was lost");
            assert_eq!(created.load(Ordering::Relaxed), 3);
            assert_eq!(freed.load(Ordering::Relaxed), 2, "each replaced array freed exactly once");
            drop(m);
            assert_eq!(freed.load(Ordering::Relaxed), 3);
        });
    }
}
