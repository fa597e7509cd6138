//! The Python module `lguest._core`: a thin layer of classes over the core.
//!
// H:1400 Everything here converts: Python arguments into Rust values, Rust
// errors into Python exceptions, and (through `guard`) Rust panics into an
// ordinary exception, so that a bug in the core can never take the Python
// interpreter down with it.

use pyo3::prelude::*;

mod bare;
mod guest;

/// Run `f`, turning a panic into a RuntimeError that names it as a bug.
pub(crate) fn guard<T>(what: &str, f: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Err(pyo3::exceptions::PyRuntimeError::new_err(format!("internal error in {what}: {msg} (this is a bug in lguest)")))
        }
    }
}

/// Run a host micro-benchmark guest: (guest instructions, host ns, operations).
#[pyfunction]
fn _host_bench(py: Python<'_>, kind: &str, n: u32) -> PyResult<(u64, u64, u64)> {
    let kind = kind.to_string();
    let r = py.detach(move || guard("_host_bench", || Ok(crate::host_bench::run(&kind, n))))?;
    match r {
        None => Err(pyo3::exceptions::PyValueError::new_err("unknown benchmark kind")),
        Some(Err(e)) => Err(pyo3::exceptions::PyRuntimeError::new_err(e)),
        Some(Ok(v)) => Ok(v),
    }
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // Panics are caught and reported by `guard`; keep the default hook from
    // also printing them to stderr.
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("LHCALL_NOTIFY", crate::hypercalls::LHCALL_NOTIFY)?;
    m.add("LHCALL_SHUTDOWN", crate::hypercalls::LHCALL_SHUTDOWN)?;
    m.add("LGUEST_IRQS", crate::lguest::LGUEST_IRQS)?;
    m.add("PAGE_SIZE", crate::memory::PAGE_SIZE)?;
    m.add("ERESTART", crate::lguest::ERESTART)?;
    m.add_function(wrap_pyfunction!(_host_bench, m)?)?;
    bare::register(m)?;
    guest::register(m)?;
    Ok(())
}
