//! The bare CPU: the interpreter without lguest, for tests and embedders.
//!
// H:1300 Sometimes you want just a processor: to test the interpreter against
// unicorn or silicon, or to run a little i386 routine from Python.  The bare
// CPU is that: flat 4 GiB segments, ring 3, paging off, memory only where
// you map it.  Touching unmapped memory is a page fault (vector 14) that
// stops `run`, with the address reported, as unicorn does.

use memmap2::MmapMut;

use crate::cpu::mem::{BareMemory, Mmu};
use crate::cpu::state::{Cpu, Exit, SegReg, Segment};
use crate::errors::BareError;

/// Flat ring-3 code and data selectors (as Linux user space has them).
pub const USER_CS: u16 = 0x73;
pub const USER_DS: u16 = 0x7b;

pub struct BareCpu {
    pub cpu: Cpu,
}

impl Default for BareCpu {
    fn default() -> Self {
        Self::new()
    }
}

fn mem(cpu: &Cpu) -> &BareMemory {
    match &cpu.mmu {
        Mmu::Bare(b) => b,
        Mmu::Paged(_) => unreachable!(),
    }
}

impl BareCpu {
    pub fn new() -> Self {
        let mut cpu = Cpu::new(Mmu::Bare(BareMemory::default()));
        cpu.set_cpl(3);
        // Flat 4 GiB: code is execute/read (0xFB), data read/write (0xF3),
        // both DPL 3, 32-bit, page-granular.
        let code = Segment::flat(USER_CS, 0xC0FB);
        let data = Segment::flat(USER_DS, 0xC0F3);
        cpu.segs[SegReg::Cs as usize] = code;
        for s in [SegReg::Ds, SegReg::Es, SegReg::Ss, SegReg::Fs, SegReg::Gs] {
            cpu.segs[s as usize] = data;
        }
        cpu.set_eflags(0x202);
        BareCpu { cpu }
    }

    pub fn mem_map(&mut self, addr: u64, size: u64) -> Result<(), BareError> {
        if !addr.is_multiple_of(4096) || !size.is_multiple_of(4096) || size == 0 {
            return Err(BareError::Unaligned(addr, size));
        }
        let end = addr.checked_add(size).filter(|&e| e <= 1 << 32).ok_or(BareError::Overlap(addr, addr.wrapping_add(size)))?;
        for (s, l, _) in &mem(&self.cpu).regions {
            let (s, e) = (*s as u64, *s as u64 + *l as u64);
            if addr < e && s < end {
                return Err(BareError::Overlap(addr, end));
            }
        }
        let map = MmapMut::map_anon(size as usize).map_err(|_| BareError::Overlap(addr, end))?;
        if let Mmu::Bare(b) = &mut self.cpu.mmu {
            b.regions.push((addr as u32, size as u32, map));
        }
        Ok(())
    }

    /// Visit each mapped page piece of [addr, addr+len).
    fn pieces(&self, addr: u64, len: usize) -> Result<Vec<(*mut u8, usize)>, BareError> {
        let mut out = Vec::new();
        let mut a = addr;
        let end = addr + len as u64;
        while a < end {
            if a >= 1 << 32 {
                return Err(BareError::Unmapped(addr, len as u64));
            }
            let host = mem(&self.cpu).find(a as u32).ok_or(BareError::Unmapped(addr, len as u64))?;
            let n = ((4096 - (a % 4096)) as usize).min((end - a) as usize);
            out.push((host, n));
            a += n as u64;
        }
        Ok(out)
    }

    pub fn mem_write(&mut self, addr: u64, data: &[u8]) -> Result<(), BareError> {
        let pieces = self.pieces(addr, data.len())?;
        let mut off = 0;
        for (host, n) in pieces {
            // SAFETY: `find` returned a pointer with at least `n` bytes of the
            // same page after it, inside a live mapping.
            unsafe { std::ptr::copy_nonoverlapping(data.as_ptr().add(off), host, n) };
            let page = (addr as u32).wrapping_add(off as u32) & !0xfff;
            if self.cpu.cache.is_code_page(page) {
                self.cpu.cache.invalidate_page(page);
            }
            off += n;
        }
        Ok(())
    }

    pub fn mem_read(&self, addr: u64, len: usize) -> Result<Vec<u8>, BareError> {
        let mut out = vec![0u8; len];
        let mut off = 0;
        for (host, n) in self.pieces(addr, len)? {
            // SAFETY: as in mem_write.
            unsafe { std::ptr::copy_nonoverlapping(host, out.as_mut_ptr().add(off), n) };
            off += n;
        }
        Ok(out)
    }

    pub fn run(&mut self, start: Option<u32>, count: u64, until: Option<u32>) -> Exit {
        if let Some(s) = start {
            self.cpu.eip = s;
        }
        let budget = if count == 0 { u64::MAX } else { count };
        self.cpu.run(budget, until)
    }

    pub fn reg_read(&self, name: &str) -> Result<u128, BareError> {
        if let Some(v) = self.fpu_reg_read(name) {
            return Ok(v);
        }
        let c = &self.cpu;
        let gpr = |i: usize| c.regs[i] as u128;
        Ok(match name {
            "eip" => c.eip as u128,
            "eflags" => c.get_eflags() as u128,
            "cs" | "ds" | "es" | "fs" | "gs" | "ss" => c.segs[seg_index(name)].selector as u128,
            _ => {
                let (i, kind) = gpr_index(name).ok_or_else(|| BareError::UnknownRegister(name.into()))?;
                match kind {
                    32 => gpr(i),
                    16 => gpr(i) & 0xffff,
                    8 => gpr(i) & 0xff,
                    _ => (gpr(i) >> 8) & 0xff,
                }
            }
        })
    }

    pub fn reg_write(&mut self, name: &str, v: u128) -> Result<(), BareError> {
        if let Some(width) = fpu_reg_width(name) {
            if width < 128 && v >> width != 0 {
                return Err(BareError::ValueTooLarge(name.into(), v));
            }
            self.fpu_reg_write(name, v);
            return Ok(());
        }
        let width = match name {
            "eip" | "eflags" => 32,
            "cs" | "ds" | "es" | "fs" | "gs" | "ss" => 16,
            _ => match gpr_index(name) {
                Some((_, 32)) => 32,
                Some((_, 16)) => 16,
                Some(_) => 8,
                None => return Err(BareError::UnknownRegister(name.into())),
            },
        };
        if v >> width != 0 {
            return Err(BareError::ValueTooLarge(name.into(), v));
        }
        let v32 = v as u32;
        let c = &mut self.cpu;
        match name {
            "eip" => c.eip = v32,
            "eflags" => {
                // The user may set the arithmetic and direction flags, TF and
                // AC; privilege bits stay as ring 3 has them.
                let keep = c.get_eflags() & !(crate::cpu::flags::ARITH | crate::cpu::flags::DF | crate::cpu::flags::TF | crate::cpu::flags::AC);
                let newbits = v32 & (crate::cpu::flags::ARITH | crate::cpu::flags::DF | crate::cpu::flags::TF | crate::cpu::flags::AC);
                c.set_eflags(keep | newbits);
            }
            "cs" | "ds" | "es" | "fs" | "gs" | "ss" => c.segs[seg_index(name)].selector = v32 as u16,
            _ => {
                let (i, kind) = gpr_index(name).ok_or_else(|| BareError::UnknownRegister(name.into()))?;
                let r = &mut c.regs[i];
                match kind {
                    32 => *r = v32,
                    16 => *r = (*r & 0xffff_0000) | v32,
                    8 => *r = (*r & 0xffff_ff00) | v32,
                    _ => *r = (*r & 0xffff_00ff) | (v32 << 8),
                }
            }
        }
        Ok(())
    }
}

// H:1310 The floating-point registers by name: "st0".."st7" are the stack
// registers relative to TOP, as 80-bit integers (significand in bits 0..64,
// sign and exponent in 64..80); "mm0".."mm7" the MMX views of the physical
// registers; "xmm0".."xmm7" 128 bits; and the control words.  Writing an
// "st" register marks it valid, writing "mm" does what an MMX move does to
// the tag word and TOP.
fn fpu_reg_width(name: &str) -> Option<u32> {
    let idx = |p: &str| name.strip_prefix(p).and_then(|n| n.parse::<u8>().ok()).filter(|&n| n < 8);
    if name.starts_with("xmm") && idx("xmm").is_some() {
        Some(128)
    } else if name.starts_with("mm") && idx("mm").is_some() {
        Some(64)
    } else if name.starts_with("st") && idx("st").is_some() {
        Some(80)
    } else {
        match name {
            "fpcw" | "fpsw" | "fptag" => Some(16),
            "mxcsr" => Some(32),
            _ => None,
        }
    }
}

impl BareCpu {
    fn fpu_reg_read(&self, name: &str) -> Option<u128> {
        fpu_reg_width(name)?;
        let f = &self.cpu.fpu;
        let n = |p: &str| name[p.len()..].parse::<usize>().unwrap_or(0);
        Some(match name {
            "fpcw" => f.cw as u128,
            "fpsw" => f.status() as u128,
            "fptag" => f.tag_word() as u128,
            "mxcsr" => f.mxcsr as u128,
            _ if name.starts_with("xmm") => f.xmm[n("xmm")],
            _ if name.starts_with("mm") => f.mm(n("mm")) as u128,
            _ => {
                let r = f.st_reg(n("st") as u8);
                r.sig as u128 | (r.se as u128) << 64
            }
        })
    }

    fn fpu_reg_write(&mut self, name: &str, v: u128) {
        let f = &mut self.cpu.fpu;
        let n = |p: &str| name[p.len()..].parse::<usize>().unwrap_or(0);
        match name {
            "fpcw" => f.set_cw(v as u16),
            "fpsw" => f.set_status(v as u16),
            "fptag" => f.set_tag_word(v as u16),
            "mxcsr" => f.mxcsr = v as u32 & crate::cpu::fpu::MXCSR_MASK,
            _ if name.starts_with("xmm") => f.xmm[n("xmm")] = v,
            _ if name.starts_with("mm") => {
                f.enter_mmx();
                f.set_mm(n("mm"), v as u64);
            }
            _ => f.set_st_reg(n("st") as u8, crate::cpu::fpu::Reg { sig: v as u64, se: (v >> 64) as u16 }),
        }
    }
}

fn seg_index(name: &str) -> usize {
    match name {
        "es" => 0,
        "cs" => 1,
        "ss" => 2,
        "ds" => 3,
        "fs" => 4,
        _ => 5,
    }
}

/// (register index, view): 32, 16, 8 (low byte) or 9 (high byte).
fn gpr_index(name: &str) -> Option<(usize, u8)> {
    const N32: [&str; 8] = ["eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"];
    const N16: [&str; 8] = ["ax", "cx", "dx", "bx", "sp", "bp", "si", "di"];
    const N8: [&str; 4] = ["al", "cl", "dl", "bl"];
    const N8H: [&str; 4] = ["ah", "ch", "dh", "bh"];
    if let Some(i) = N32.iter().position(|&n| n == name) {
        return Some((i, 32));
    }
    if let Some(i) = N16.iter().position(|&n| n == name) {
        return Some((i, 16));
    }
    if let Some(i) = N8.iter().position(|&n| n == name) {
        return Some((i, 8));
    }
    N8H.iter().position(|&n| n == name).map(|i| (i, 9))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_code(code: &[u8]) -> (BareCpu, Exit) {
        let mut b = BareCpu::new();
        b.mem_map(0x1000, 0x1000).unwrap();
        b.mem_map(0x8000, 0x1000).unwrap();
        b.mem_write(0x1000, code).unwrap();
        b.reg_write("esp", 0x9000).unwrap();
        let end = 0x1000 + code.len() as u32;
        let e = b.run(Some(0x1000), 0, Some(end));
        (b, e)
    }

    #[test]
    fn crc_like_loop() {
        // mov ecx, 10; xor eax, eax; l: add eax, ecx; loop l
        let (b, e) = run_code(&[0xb9, 10, 0, 0, 0, 0x31, 0xc0, 0x01, 0xc8, 0xe2, 0xfc]);
        assert_eq!(e, Exit::Address);
        assert_eq!(b.reg_read("eax").unwrap(), 55);
    }

    #[test]
    fn push_pop_call_ret() {
        // call f; jmp end; f: push 7; pop eax; ret; end:
        let (b, e) = run_code(&[0xe8, 2, 0, 0, 0, 0xeb, 4, 0x6a, 7, 0x58, 0xc3]);
        assert_eq!(e, Exit::Address);
        assert_eq!(b.reg_read("eax").unwrap(), 7);
        assert_eq!(b.reg_read("esp").unwrap(), 0x9000);
    }

    #[test]
    fn unmapped_access_is_a_page_fault() {
        // mov eax, [0x5000]
        let (b, e) = run_code(&[0xa1, 0, 0x50, 0, 0]);
        match e {
            Exit::Fault(f) => assert_eq!((f.vector, f.addr, f.error), (14, 0x5000, Some(4))),
            other => panic!("{other:?}"),
        }
        assert_eq!(b.reg_read("eip").unwrap(), 0x1000);
    }

    #[test]
    fn divide_error_leaves_state() {
        // xor ecx, ecx; div ecx
        let (b, e) = run_code(&[0x31, 0xc9, 0xf7, 0xf1]);
        assert!(matches!(e, Exit::Fault(f) if f.vector == 0));
        assert_eq!(b.reg_read("eip").unwrap(), 0x1002);
    }

    #[test]
    fn self_modifying_code() {
        // mov byte [0x1009], 0x42 (turn "inc eax" at 0x1009 into "inc edx"); nop; inc eax
        let code = [0xc6, 0x05, 0x09, 0x10, 0, 0, 0x42, 0x90, 0x90, 0x40];
        let (b, _) = run_code(&code);
        assert_eq!(b.reg_read("eax").unwrap(), 0);
        assert_eq!(b.reg_read("edx").unwrap(), 1);
    }

    #[test]
    fn fpu_register_names() {
        let mut b = BareCpu::new();
        b.reg_write("xmm3", 1u128 << 127 | 5).unwrap();
        assert_eq!(b.reg_read("xmm3").unwrap(), 1u128 << 127 | 5);
        b.reg_write("st0", 0x3fff_8000_0000_0000_0000).unwrap();
        assert_eq!(b.reg_read("st0").unwrap(), 0x3fff_8000_0000_0000_0000);
        assert_eq!(b.reg_read("fpcw").unwrap(), 0x37f);
        assert_eq!(b.reg_read("mxcsr").unwrap(), 0x1f80);
        assert_eq!(b.reg_read("fptag").unwrap(), 0xffff & !3);
        b.reg_write("mm2", 0x1234).unwrap();
        assert_eq!(b.reg_read("mm2").unwrap(), 0x1234);
        // R0 valid, R2 special (exponent all ones), the rest zero.
        assert_eq!(b.reg_read("fptag").unwrap(), 0x5564);
        assert!(b.reg_write("mm2", 1 << 64).is_err());
        assert!(b.reg_read("xmm8").is_err());
    }

    #[test]
    fn int_and_count_exits() {
        let (b, e) = run_code(&[0x90, 0xcd, 0x80, 0x90]);
        assert_eq!(e, Exit::Int(0x80));
        assert_eq!(b.reg_read("eip").unwrap(), 0x1003);
        let mut b = BareCpu::new();
        b.mem_map(0x1000, 0x1000).unwrap();
        b.mem_write(0x1000, &[0x40, 0x40, 0x40, 0xeb, 0xfb]).unwrap();
        assert_eq!(b.run(Some(0x1000), 7, None), Exit::Count);
        // inc, inc, inc, jmp, inc, inc, inc
        assert_eq!(b.reg_read("eax").unwrap(), 6);
    }
}
