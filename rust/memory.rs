//! Guest-physical memory.
//!
// H:100 Every guest needs somewhere to keep its "physical" memory.  The
// original Launcher mapped /dev/zero privately and told the kernel module
// where it was; here the core owns one anonymous mapping and hands out
// three kinds of access to it:
//
//  * the interpreter, which turns guest-physical addresses into host pointers
//    through its software TLB after one bounds check per page;
//  * the host-side code (hypercalls, trap frames, lguest_data), which goes
//    through `read`/`write` below: every range is checked against the
//    guest's limit, exactly the check the original `lgread`/`lgwrite` made;
//  * Python (the Launcher and the device threads), which sees the same bytes
//    as a writable buffer without copying.
//
// The guest can never reach host memory outside this mapping: every address
// that leaves this module has passed `check`.

use std::sync::atomic::{AtomicU32, Ordering};

use memmap2::MmapMut;

use crate::errors::MemoryError;

pub const PAGE_SIZE: u32 = 4096;
pub const PAGE_SHIFT: u32 = 12;

/// One zero-filled anonymous mapping holding guest-physical memory.
///
/// The mapping never moves and is never resized, so raw pointers into it stay
/// valid for the life of the object.  Several threads touch it at once (the
/// vCPU and device threads), just as several host threads touched the
/// original Launcher's mapping; the guest and its devices synchronise through
/// the virtqueue protocol, not through us.
pub struct GuestMemory {
    map: MmapMut,
    base: *mut u8,
    len: usize,
    /// Accessible limit in bytes (the original's `pfn_limit * 4096`).  It
    /// starts as the whole mapping and is lowered by LHREQ_INITIALIZE.
    limit: AtomicU32,
}

// SAFETY: the mapping is plain memory owned by this object; the raw pointer is
// only a cached copy of `map.as_mut_ptr()`.  Concurrent access from several
// threads is the documented model (shared guest RAM), and every access goes
// through unaligned volatile-free reads/writes of plain bytes.
unsafe impl Send for GuestMemory {}
// SAFETY: see above; no interior state besides the atomic limit.
unsafe impl Sync for GuestMemory {}

impl GuestMemory {
    /// Map `len` bytes of zeroed memory.  `len` must be a non-zero multiple of
    /// the page size and at most 4 GiB (a 32-bit guest can address no more).
    pub fn new(len: usize) -> Result<Self, MemoryError> {
        if len == 0 || !len.is_multiple_of(PAGE_SIZE as usize) {
            return Err(MemoryError::BadSize(len as u64));
        }
        if len as u64 > (1u64 << 32) - PAGE_SIZE as u64 {
            return Err(MemoryError::BadSize(len as u64));
        }
        let mut map = MmapMut::map_anon(len).map_err(MemoryError::Map)?;
        // Ask for transparent huge pages.  The interpreter's loads and stores
        // land all over guest memory, and with 4 KiB pages every one of them
        // risks a host TLB miss (measured: a Linux boot to user space about 5%
        // faster).  Only a hint: where the host does not do huge pages
        // nothing changes, so a failure is ignored.
        #[cfg(target_os = "linux")]
        let _ = map.advise(memmap2::Advice::HugePage);
        let base = map.as_mut_ptr();
        Ok(GuestMemory { map, base, len, limit: AtomicU32::new(len as u32) })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The guest-visible limit in bytes.
    pub fn limit(&self) -> u32 {
        self.limit.load(Ordering::Relaxed)
    }

    pub fn set_limit(&self, bytes: u32) {
        debug_assert!(bytes as usize <= self.len);
        self.limit.store(bytes, Ordering::Relaxed);
    }

    /// Host address of the first byte (for the buffer protocol).
    pub fn as_ptr(&self) -> *mut u8 {
        self.base
    }

    /// H:110 The one range check.  A range is fine if it does not wrap around
    /// 2^32 and ends at or below the limit.  (2.6.32 as released used a strict
    /// comparison that refused a range ending exactly at the limit; later
    /// stable kernels fixed that, and so do we.)
    #[inline]
    pub fn check(&self, addr: u32, len: u32) -> bool {
        match addr.checked_add(len) {
            Some(end) => end <= self.limit(),
            None => false,
        }
    }

    /// Host pointer for a guest-physical page, if the whole page is inside the
    /// limit.  The interpreter's TLB caches these.
    #[inline]
    pub fn page_ptr(&self, gpa: u32) -> Option<*mut u8> {
        let page = gpa & !(PAGE_SIZE - 1);
        if self.check(page, PAGE_SIZE) {
            // SAFETY: page + 4096 <= limit <= len, so the pointer is inside
            // the mapping.
            Some(unsafe { self.base.add(page as usize) })
        } else {
            None
        }
    }

    /// Copy guest bytes out.  Fails (touching nothing) if the range is bad.
    pub fn read(&self, addr: u32, out: &mut [u8]) -> Result<(), MemoryError> {
        let len = u32::try_from(out.len()).map_err(|_| MemoryError::Read { addr, len: u32::MAX })?;
        if !self.check(addr, len) {
            return Err(MemoryError::Read { addr, len });
        }
        // SAFETY: checked above that [addr, addr+len) lies inside the mapping.
        unsafe { std::ptr::copy_nonoverlapping(self.base.add(addr as usize), out.as_mut_ptr(), out.len()) };
        Ok(())
    }

    /// Copy bytes into guest memory.  Fails (touching nothing) if the range is bad.
    pub fn write(&self, addr: u32, data: &[u8]) -> Result<(), MemoryError> {
        let len = u32::try_from(data.len()).map_err(|_| MemoryError::Write { addr, len: u32::MAX })?;
        if !self.check(addr, len) {
            return Err(MemoryError::Write { addr, len });
        }
        // SAFETY: checked above that [addr, addr+len) lies inside the mapping.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.base.add(addr as usize), data.len()) };
        Ok(())
    }

    pub fn read_u32(&self, addr: u32) -> Result<u32, MemoryError> {
        let mut b = [0u8; 4];
        self.read(addr, &mut b).map_err(|_| MemoryError::Read { addr, len: 4 })?;
        Ok(u32::from_le_bytes(b))
    }

    pub fn write_u32(&self, addr: u32, v: u32) -> Result<(), MemoryError> {
        self.write(addr, &v.to_le_bytes())
    }

    pub fn read_u8(&self, addr: u32) -> Result<u8, MemoryError> {
        let mut b = [0u8; 1];
        self.read(addr, &mut b)?;
        Ok(b[0])
    }

    pub fn write_u8(&self, addr: u32, v: u8) -> Result<(), MemoryError> {
        self.write(addr, &[v])
    }

    /// The whole mapping as a byte slice, for code that already validated its
    /// indices (tests and the loader).
    pub fn bytes(&self) -> &[u8] {
        &self.map[..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_and_bounds_checked() {
        let m = GuestMemory::new(8192).unwrap();
        assert_eq!(m.read_u32(0).unwrap(), 0);
        m.write_u32(8188, 0xdeadbeef).unwrap();
        assert_eq!(m.read_u32(8188).unwrap(), 0xdeadbeef);
        assert!(m.read_u32(8189).is_err());
        assert!(m.write(u32::MAX, &[1, 2]).is_err());
        assert!(m.check(0, 8192));
        assert!(!m.check(1, 8192));
    }

    #[test]
    fn limit_is_enforced() {
        let m = GuestMemory::new(3 * 4096).unwrap();
        m.set_limit(4096);
        assert!(m.write_u32(4092, 1).is_ok());
        assert!(m.write_u32(4096, 1).is_err());
        assert!(m.page_ptr(0).is_some());
        assert!(m.page_ptr(4096).is_none());
    }

    #[test]
    fn bad_sizes_are_refused() {
        assert!(GuestMemory::new(0).is_err());
        assert!(GuestMemory::new(100).is_err());
    }
}
