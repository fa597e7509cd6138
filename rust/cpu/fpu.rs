//! x87, MMX and SSE state.
//!
// H:700 The floating-point units are not interpreted yet: their instructions
// raise #UD, and CPUID does not advertise them, so a guest that checks
// CPUID (as Linux does) never uses them.  The state lives here so that the
// lazy-FPU protocol (the TS flag and #NM) has something to protect.

use iced_x86::Instruction;

use super::decode::Handler;

/// Whether x87/MMX/SSE/SSE2 are implemented (and so advertised by CPUID).
pub const IMPLEMENTED: bool = false;

#[derive(Clone, Default)]
pub struct Fpu {
    pub control: u16,
    pub status: u16,
    pub tag: u16,
    pub st: [u128; 8],
    pub xmm: [u128; 8],
    pub mxcsr: u32,
}

/// The handler for a floating-point or vector instruction, if implemented.
pub fn pick(_i: &Instruction) -> Option<Handler> {
    None
}
