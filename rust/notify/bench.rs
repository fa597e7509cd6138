//! A micro-benchmark of the map's reader against lock-based alternatives,
//! exposed to Python (hidden) so that the benchmark suite can print it.
//!
// H:1280 The claim behind the RCU design is that the vCPU's lookup costs no
// more than scanning a small array, whatever device threads are doing.  This
// measures it: one thread looks addresses up as fast as it can for a fixed
// time, optionally while a second thread attaches and detaches an entry in a
// tight loop, for the production map and for the obvious alternatives, a
// `Mutex<Vec>` and an `RwLock<Vec>`.  Every variant keeps the addresses
// inline and does the same scan; the lookups skip the eventfd write, whose
// system call would hide the differences being measured.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use thiserror::Error;

use super::{CachedReader, Keyed, KeyedMap};

#[derive(Debug, Error)]
pub enum BenchError {
    #[error("unknown map variant {0:?} (expected \"rcu\", \"rcu-cached\", \"mutex\" or \"rwlock\")")]
    UnknownVariant(String),
    #[error("the map needs at least one entry")]
    NoEntries,
}

struct BenchEntry {
    addr: u32,
}

impl Keyed for BenchEntry {
    type Hot = u32;
    fn addr(&self) -> u32 {
        self.addr
    }
    fn hot(&self) -> u32 {
        self.addr
    }
}

/// The address the attaching thread churns; never looked up.
const CHURN: u32 = 0xFFFF_F000;

trait Map: Send + Sync {
    fn lookup(&self, addr: u32) -> bool;
    fn attach(&self, addr: u32);
    fn detach(&self, addr: u32);
}

impl Map for KeyedMap<BenchEntry> {
    #[inline]
    fn lookup(&self, addr: u32) -> bool {
        KeyedMap::lookup(self, addr, black_box).is_some()
    }
    fn attach(&self, addr: u32) {
        KeyedMap::attach(self, BenchEntry { addr }, false)
    }
    fn detach(&self, addr: u32) {
        KeyedMap::detach(self, addr);
    }
}

impl Map for Mutex<Vec<(u32, Arc<BenchEntry>)>> {
    #[inline]
    fn lookup(&self, addr: u32) -> bool {
        let v = self.lock().unwrap_or_else(|e| e.into_inner());
        v.iter().find(|e| e.0 == addr).map(|e| black_box(e.0)).is_some()
    }
    fn attach(&self, addr: u32) {
        self.lock().unwrap_or_else(|e| e.into_inner()).push((addr, Arc::new(BenchEntry { addr })));
    }
    fn detach(&self, addr: u32) {
        self.lock().unwrap_or_else(|e| e.into_inner()).retain(|e| e.0 != addr);
    }
}

impl Map for RwLock<Vec<(u32, Arc<BenchEntry>)>> {
    #[inline]
    fn lookup(&self, addr: u32) -> bool {
        let v = self.read().unwrap_or_else(|e| e.into_inner());
        v.iter().find(|e| e.0 == addr).map(|e| black_box(e.0)).is_some()
    }
    fn attach(&self, addr: u32) {
        self.write().unwrap_or_else(|e| e.into_inner()).push((addr, Arc::new(BenchEntry { addr })));
    }
    fn detach(&self, addr: u32) {
        self.write().unwrap_or_else(|e| e.into_inner()).retain(|e| e.0 != addr);
    }
}

/// What one measurement produced.
#[derive(Debug, Clone, Copy)]
pub struct LookupRate {
    /// Lookups per second in the reading thread.
    pub lookups_per_sec: f64,
    /// Attach+detach pairs the other thread completed in the same time.
    pub attaches: u64,
}

/// Look addresses up in a map of `entries` entries for `time`, with or
/// without a thread attaching concurrently.
pub fn lookup_rate(variant: &str, entries: u32, attacher: bool, time: Duration) -> Result<LookupRate, BenchError> {
    if entries == 0 {
        return Err(BenchError::NoEntries);
    }
    // The vCPU's caching reader (H:1260) over the same production map.
    let keyed = Arc::new(KeyedMap::<BenchEntry>::default());
    let map: Arc<dyn Map> = match variant {
        "rcu" | "rcu-cached" => keyed.clone(),
        "mutex" => Arc::new(Mutex::new(Vec::<(u32, Arc<BenchEntry>)>::new())),
        "rwlock" => Arc::new(RwLock::new(Vec::<(u32, Arc<BenchEntry>)>::new())),
        other => return Err(BenchError::UnknownVariant(other.to_string())),
    };
    for k in 1..=entries {
        map.attach(k * 0x1000);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let attaches = Arc::new(AtomicU64::new(0));
    let churn = attacher.then(|| {
        let (map, stop, attaches) = (map.clone(), stop.clone(), attaches.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                map.attach(CHURN);
                map.detach(CHURN);
                attaches.fetch_add(1, Ordering::Relaxed);
            }
        })
    });
    // Give the attaching thread time to get going before we measure.
    if attacher {
        while attaches.load(Ordering::Relaxed) == 0 {
            std::thread::yield_now();
        }
    }
    // Created only now: a cached reader holds the array it last saw, and the
    // attaches above would wait for it.
    let mut cached = (variant == "rcu-cached").then(|| CachedReader::new(keyed.clone()));
    let before = attaches.load(Ordering::Relaxed);
    let start = Instant::now();
    let mut n: u64 = 0;
    let mut addr = 0u32;
    loop {
        for _ in 0..1024 {
            addr = if addr >= entries { 1 } else { addr + 1 };
            let hit = match &mut cached {
                Some(r) => r.lookup(addr * 0x1000, black_box).is_some(),
                None => map.lookup(addr * 0x1000),
            };
            debug_assert!(hit);
            black_box(hit);
        }
        n += 1024;
        if start.elapsed() >= time {
            break;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let done = attaches.load(Ordering::Relaxed) - before;
    stop.store(true, Ordering::Relaxed);
    // The cached reader holds an array reference between lookups; let go of
    // it, or the attaching thread's grace period would wait for us forever.
    drop(cached);
    if let Some(t) = churn {
        let _ = t.join();
    }
    Ok(LookupRate { lookups_per_sec: n as f64 / secs, attaches: done })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_runs() {
        for v in ["rcu", "rcu-cached", "mutex", "rwlock"] {
            let r = lookup_rate(v, 4, true, Duration::from_millis(20)).unwrap();
            assert!(r.lookups_per_sec > 0.0 && r.attaches > 0, "{v}: {r:?}");
        }
        assert!(lookup_rate("spin", 4, false, Duration::from_millis(1)).is_err());
        assert!(lookup_rate("rcu", 0, false, Duration::from_millis(1)).is_err());
    }
}
