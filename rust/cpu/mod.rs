//! The i386 interpreter.
//!
// H:200 lguest ran its guests on the real processor, at ring 1, and only
// stepped in when the guest trapped.  We have no kernel module and no
// hardware virtualisation, so the processor itself is software: this module
// executes i386 instructions one decoded block at a time.
//
// The pieces, each in its own file:
//  * `state`   - registers, segment caches, the shape of an exit;
//  * `flags`   - lazy arithmetic flags;
//  * `mem`     - the software TLB and every guest memory access;
//  * `decode`  - the cache of decoded blocks, keyed by guest-physical address;
//  * `exec`    - what each instruction does, grouped by family;
//  * `fpu`     - the x87, MMX and SSE units (H:700);
//  * `run`     - the hot loop that ties them together.
//
// The interpreter knows nothing about lguest.  It stops and reports an `Exit`
// whenever something needs a decision from outside (a software interrupt, an
// exception, `hlt`, a budget running out; H:255); the host code in
// `crate::lguest`, `crate::interrupts` and `crate::hypercalls` makes those
// decisions, just as the lguest module did for the real CPU.

pub mod decode;
pub mod exec;
pub mod flags;
pub mod fpu;
pub mod mem;
pub mod run;
pub mod state;

pub use state::{Cpu, Exit, Fault, Segment, SegReg, Stop};
