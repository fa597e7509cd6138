//! Python class `Lguest` over `crate::lguest::Guest`, and `GuestDied`.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;

use crate::lguest::{Death, Guest, RunOutcome, Shared, ERESTART};
use crate::memory::GuestMemory;
use crate::mmu::PagingMode;
use crate::notify::NotifyMap;

pyo3::create_exception!(_core, GuestDied, PyOSError, "The guest is dead; `reason` says why, `restart` whether it asked to reboot.");

/// What the Python side knows about the guest without taking its lock (which
/// `run` holds while the guest executes).
const STATE_NEW: u8 = 0;
const STATE_READY: u8 = 1;
const STATE_DEAD: u8 = 2;

/// How long the guest runs with the GIL released before `run` looks for
/// signals.  Ctrl-C must stop a guest within 50 ms; this plus one
/// interpreter slice (a few milliseconds) keeps well inside that, and
/// re-taking the GIL 100 times a second costs nothing measurable.
const SIGNAL_POLL: Duration = Duration::from_millis(10);

#[pyclass(module = "lguest._core", name = "Lguest", frozen)]
pub struct Lguest {
    mem: Arc<GuestMemory>,
    shared: Arc<Shared>,
    notify: Arc<NotifyMap>,
    guest: Mutex<Guest>,
    state: AtomicU8,
    instructions: AtomicU64,
    reason: Mutex<Option<Death>>,
}

fn os_error(errno: i32, msg: impl Into<String>) -> PyErr {
    PyOSError::new_err((errno, msg.into()))
}

fn died(py: Python<'_>, death: &Death) -> PyErr {
    let (errno, reason, restart) = match death {
        Death::Restart => (ERESTART, "guest asked to restart".to_string(), true),
        Death::Reason(r) => (libc::ENOENT, r.clone(), false),
    };
    let err = GuestDied::new_err((errno, reason.clone()));
    let v = err.value(py);
    let _ = v.setattr("reason", reason);
    let _ = v.setattr("restart", restart);
    err
}

#[pymethods]
impl Lguest {
    #[new]
    fn new(memory: usize) -> PyResult<Self> {
        let mem = Arc::new(GuestMemory::new(memory).map_err(|e| PyValueError::new_err(e.to_string()))?);
        let guest = Guest::new(mem.clone());
        Ok(Lguest {
            mem,
            shared: guest.shared.clone(),
            notify: guest.notify.clone(),
            guest: Mutex::new(guest),
            state: AtomicU8::new(STATE_NEW),
            instructions: AtomicU64::new(0),
            reason: Mutex::new(None),
        })
    }

    /// The guest's memory as a writable memoryview (zero-copy).  The view
    /// keeps this object, and so the memory, alive.
    #[getter]
    fn mem<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let me = slf.get();
        let ctypes = py.import("ctypes")?;
        let array_type = ctypes.getattr("c_ubyte")?.call_method1("__mul__", (me.mem.len(),))?;
        let arr = array_type.call_method1("from_address", (me.mem.as_ptr() as usize,))?;
        arr.setattr("_lguest_owner", slf)?;
        let builtins = py.import("builtins")?;
        builtins.getattr("memoryview")?.call1((arr,))?.call_method1("cast", ("B",))
    }

    #[getter]
    fn size(&self) -> usize {
        self.mem.len()
    }

    /// LHREQ_INITIALIZE: once per object; EBUSY afterwards, dead or alive.
    /// `pae` picks the guest's page-table layout (H:592).
    #[pyo3(signature = (pfn_limit, start, *, pae=false))]
    fn initialize(&self, pfn_limit: u32, start: u32, pae: bool) -> PyResult<()> {
        if self.state.load(Ordering::Acquire) != STATE_NEW {
            return Err(os_error(libc::EBUSY, "the guest is already initialized"));
        }
        let mut g = self.guest.try_lock().map_err(|_| os_error(libc::EBUSY, "the guest is already initialized"))?;
        if g.initialized {
            return Err(os_error(libc::EBUSY, "the guest is already initialized"));
        }
        let mode = if pae { PagingMode::Pae } else { PagingMode::TwoLevel };
        g.initialize(pfn_limit, start, mode).map_err(|e| os_error(libc::EFAULT, e))?;
        self.state.store(STATE_READY, Ordering::Release);
        Ok(())
    }

    /// H:1297 LHREQ_IRQ, from any thread, while the guest runs or not.  This
    /// is where a device thread's interrupt crosses from Python into the
    /// core (L:245).  It cannot take the guest's lock, which the vCPU holds
    /// while the guest runs, and it does not need to: it sets a bit and
    /// wakes the vCPU (H:910), and the vCPU delivers the interrupt itself
    /// (H:1040).
    fn irq(&self, n: u32) -> PyResult<()> {
        self.check_usable()?;
        if n >= crate::lguest::LGUEST_IRQS {
            return Err(os_error(libc::EINVAL, format!("interrupt {n} is not below {}", crate::lguest::LGUEST_IRQS)));
        }
        self.shared.raise_irq(n);
        Ok(())
    }

    /// LHREQ_EVENTFD: signal eventfd `fd` when the guest notifies `addr`.
    /// The GIL is released while the map waits out its grace period.
    #[pyo3(signature = (addr, fd, replace=false))]
    fn eventfd(&self, py: Python<'_>, addr: u32, fd: i32, replace: bool) -> PyResult<()> {
        self.check_usable()?;
        py.detach(|| self.notify.attach(addr, fd, replace)).map_err(|e| os_error(e.errno(), e.to_string()))
    }

    /// A device wrote [gpa, gpa+len) of guest memory: forget any decoded code
    /// there before the guest can run it.  Any thread.
    fn note_dma(&self, gpa: u32, len: u32) -> PyResult<()> {
        if !self.mem.check(gpa, len) {
            return Err(PyValueError::new_err(format!("range {gpa:#x}+{len:#x} is outside guest memory")));
        }
        self.shared.note_dma(gpa, len);
        Ok(())
    }

    /// Remove the eventfds attached to `addr`; returns how many there were.
    /// Once it returns the guest can no longer signal them.
    fn detach_eventfd(&self, py: Python<'_>, addr: u32) -> PyResult<usize> {
        self.check_usable()?;
        Ok(py.detach(|| self.notify.detach(addr)))
    }

    /// Run the guest (the original's read()).
    fn run(&self, py: Python<'_>) -> PyResult<u32> {
        if self.state.load(Ordering::Acquire) == STATE_NEW {
            return Err(os_error(libc::EINVAL, "the guest is not initialized"));
        }
        let mut guard = self.guest.try_lock().map_err(|_| os_error(libc::EPERM, "run() is already running in another thread"))?;
        if let Some(d) = guard.death.clone() {
            return Err(died(py, &d));
        }
        let g: &mut Guest = &mut guard;
        loop {
            // H:1295 The guest runs with the GIL released, in pieces of
            // SIGNAL_POLL.  Between pieces we take the GIL back just long
            // enough to let Python run its signal handlers: Ctrl-C becomes
            // KeyboardInterrupt here, with the guest stopped between two
            // instructions and ready to be run again.  The interpreter itself
            // never calls into Python.  A notification nobody claimed comes
            // back as run()'s result (L:150), and a death as GuestDied
            // (L:175).
            let outcome = py.detach(|| std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| g.run(SIGNAL_POLL))));
            self.instructions.store(g.cpu.icount, Ordering::Relaxed);
            match outcome {
                Err(_) => {
                    g.kill("internal error in the lguest core (a bug): guest stopped");
                    self.mark_dead(g);
                    return Err(PyRuntimeError::new_err("internal error in the lguest core; the guest was stopped (this is a bug in lguest)"));
                }
                Ok(RunOutcome::Notify(a)) => return Ok(a),
                Ok(RunOutcome::Died) => {
                    let d = self.mark_dead(g);
                    return Err(died(py, &d));
                }
                Ok(RunOutcome::Yield) => py.check_signals()?,
                Ok(RunOutcome::Interrupted) => {
                    return Err(pyo3::exceptions::PyInterruptedError::new_err((libc::EINTR, "run() was interrupted by Lguest.interrupt()")));
                }
            }
        }
    }

    /// Make a running run() return (raising InterruptedError) at its next
    /// block boundary, from any thread.  If no run() is in progress, the next
    /// one returns at once.  The guest stays intact and can be run again.
    fn interrupt(&self) {
        self.shared.interrupt();
    }

    /// The death reason, once dead.
    #[getter]
    fn reason(&self) -> Option<String> {
        match &*self.reason.lock().unwrap_or_else(|e| e.into_inner()) {
            None => None,
            Some(Death::Restart) => Some("guest asked to restart".into()),
            Some(Death::Reason(r)) => Some(r.clone()),
        }
    }

    #[getter]
    fn instructions(&self) -> u64 {
        self.instructions.load(Ordering::Relaxed)
    }
}

impl Lguest {
    /// The checks the original applied to every request but INITIALIZE, in
    /// its order: no guest yet is EINVAL, a dead guest is ENOENT.
    fn check_usable(&self) -> PyResult<()> {
        match self.state.load(Ordering::Acquire) {
            STATE_NEW => Err(os_error(libc::EINVAL, "the guest is not initialized")),
            STATE_DEAD => Err(os_error(libc::ENOENT, "the guest is dead")),
            _ => Ok(()),
        }
    }

    fn mark_dead(&self, g: &Guest) -> Death {
        let d = g.death.clone().unwrap_or(Death::Reason("unknown".into()));
        *self.reason.lock().unwrap_or_else(|e| e.into_inner()) = Some(d.clone());
        self.state.store(STATE_DEAD, Ordering::Release);
        d
    }
}

/// Lookups per second in the eventfd map (`variant` "rcu", the production
/// map) or a lock-based stand-in ("mutex", "rwlock"), with `entries`
/// entries, for `seconds`, optionally while another thread attaches and
/// detaches.  Returns (lookups per second, attach+detach pairs done).  For
/// the benchmarks; not part of the API.
#[pyfunction]
#[pyo3(signature = (variant, entries, attacher, seconds))]
fn _notify_lookup_bench(py: Python<'_>, variant: &str, entries: u32, attacher: bool, seconds: f64) -> PyResult<(f64, u64)> {
    let time = Duration::try_from_secs_f64(seconds).map_err(|e| PyValueError::new_err(format!("bad duration: {e}")))?;
    let variant = variant.to_string();
    let r = py
        .detach(|| crate::notify::bench::lookup_rate(&variant, entries, attacher, time))
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok((r.lookups_per_sec, r.attaches))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("GuestDied", m.py().get_type::<GuestDied>())?;
    m.add_class::<Lguest>()?;
    m.add_function(wrap_pyfunction!(_notify_lookup_bench, m)?)?;
    Ok(())
}
