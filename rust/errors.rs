//! Error types that cross module boundaries.  Each message reads as a sentence
//! a user can act on; the Python layer turns them into exceptions.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum MemoryError {
    #[error("guest memory size {0:#x} is not a non-zero multiple of 4096 below 4 GiB")]
    BadSize(u64),
    #[error("cannot map guest memory: {0}")]
    Map(#[source] std::io::Error),
    // H:120 These two are the original's death reasons for a host access
    // outside guest memory; the wording is part of what the Launcher shows.
    #[error("bad read address {addr:#x} len {len}")]
    Read { addr: u32, len: u32 },
    #[error("bad write address {addr:#x} len {len}")]
    Write { addr: u32, len: u32 },
}

#[derive(Debug, Error)]
pub enum BareError {
    #[error("address {0:#x} or size {1:#x} is not page aligned")]
    Unaligned(u64, u64),
    #[error("mapping [{0:#x}, {1:#x}) overlaps an existing mapping or leaves the 4 GiB space")]
    Overlap(u64, u64),
    #[error("address range [{0:#x}, +{1:#x}) is not mapped")]
    Unmapped(u64, u64),
    #[error("unknown register {0:?}")]
    UnknownRegister(String),
    #[error("value {1:#x} does not fit register {0}")]
    ValueTooLarge(String, u128),
}
