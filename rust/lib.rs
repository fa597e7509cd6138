//! lguest's host and processor, as a Python extension (`lguest._core`).
//!
// H:010 Start here.  The original lguest had three actors: the guest kernel,
// the host kernel module behind /dev/lguest, and the Launcher in user space.
// This crate is the middle one plus the processor the guest runs on:
//
//  * `cpu`        - an i386 interpreter (the guest's processor);
//  * `mmu`        - the guest's page tables, as the host sees them;
//  * `memory`     - guest-physical memory;
//  * `lguest`     - the /dev/lguest object and its run loop;
//  * `hypercalls`, `interrupts`, `segments` - the host's jobs, one file each;
//  * `notify`     - the NOTIFY -> eventfd map, published read-copy-update;
//  * `bare`       - the processor alone, for tests and embedders;
//  * `py`         - the thin Python layer over all of that.
//
// `lguest journey` prints these comments in tour order (the `H:` tags).

pub mod bare;
pub mod cpu;
pub mod errors;
pub mod host_bench;
pub mod hypercalls;
pub mod interrupts;
pub mod lguest;
pub mod memory;
pub mod mmu;
pub mod notify;
pub mod segments;

#[cfg(test)]
mod host_tests;

// P:060 The crate builds two ways.  As the Python extension (feature
// "python", the default, built by maturin) it is `lguest._core`, and `py`
// is its only door to Python.  Without that feature it is a plain Rust
// library: `cargo test --no-default-features` tests the host and the
// interpreter without linking libpython, and the loom build checks the
// eventfd map's publication (H:1270).  Nothing below `py` knows Python
// exists, which is why the vCPU can run with the GIL released.
#[cfg(feature = "python")]
mod py;
