//! String instructions, with and without rep prefixes.
//!
// H:390 A `rep movs` can copy megabytes in one instruction.  We run it in
// slices: each call of the handler does at most `SLICE` iterations, updating
// ESI/EDI/ECX as it goes, and if work remains it leaves EIP on the
// instruction so the run loop comes back to it after checking for events.
// That is also what a real processor does when an interrupt arrives in the
// middle of a rep: the registers say how far it got, and it resumes.  A
// fault in the middle leaves the same, restartable, state.

use iced_x86::OpKind;

use super::R;
use crate::cpu::decode::DInsn;
use crate::cpu::flags::{self, FlagOp};
use crate::cpu::state::{Cpu, SegReg, EAX, ECX, EDI, ESI};

const SLICE: u32 = 1 << 16;

#[inline(always)]
fn addr16(d: &DInsn) -> bool {
    (0..d.i.op_count()).any(|n| matches!(d.i.op_kind(n), OpKind::MemorySegSI | OpKind::MemorySegDI | OpKind::MemoryESDI))
}

/// Element size in bytes for this instruction.
#[inline(always)]
fn elem(d: &DInsn) -> u8 {
    use iced_x86::MemorySize as S;
    match d.i.memory_size() {
        S::UInt8 | S::Int8 => 1,
        S::UInt16 | S::Int16 => 2,
        _ => 4,
    }
}

struct Regs {
    a16: bool,
    step: u32,
}

impl Regs {
    fn new(cpu: &Cpu, d: &DInsn) -> Self {
        let e = elem(d) as u32;
        let step = if cpu.eflags & flags::DF != 0 { e.wrapping_neg() } else { e };
        Regs { a16: addr16(d), step }
    }
    #[inline(always)]
    fn get(&self, cpu: &Cpu, r: usize) -> u32 {
        if self.a16 {
            cpu.regs[r] & 0xffff
        } else {
            cpu.regs[r]
        }
    }
    #[inline(always)]
    fn advance(&self, cpu: &mut Cpu, r: usize) {
        if self.a16 {
            let v = (cpu.regs[r] as u16).wrapping_add(self.step as u16);
            cpu.regs[r] = (cpu.regs[r] & 0xffff_0000) | v as u32;
        } else {
            cpu.regs[r] = cpu.regs[r].wrapping_add(self.step);
        }
    }
    #[inline(always)]
    fn count(&self, cpu: &Cpu) -> u32 {
        self.get(cpu, ECX)
    }
    #[inline(always)]
    fn dec_count(&self, cpu: &mut Cpu) {
        if self.a16 {
            let v = (cpu.regs[ECX] as u16).wrapping_sub(1);
            cpu.regs[ECX] = (cpu.regs[ECX] & 0xffff_0000) | v as u32;
        } else {
            cpu.regs[ECX] = cpu.regs[ECX].wrapping_sub(1);
        }
    }
}

#[inline(always)]
fn rep(d: &DInsn) -> bool {
    d.i.has_rep_prefix() || d.i.has_repne_prefix()
}

/// Repeat `body` as the prefix says.  `body` returns whether a repe/repne
/// comparison wants to continue.
#[inline(always)]
fn repeat(cpu: &mut Cpu, d: &DInsn, r: &Regs, mut body: impl FnMut(&mut Cpu) -> Result<bool, crate::cpu::state::Fault>) -> R {
    if !rep(d) {
        body(cpu)?;
        return Ok(());
    }
    let mut n = 0;
    while r.count(cpu) != 0 {
        if n == SLICE {
            // Come back to this instruction after the event check.
            cpu.next_eip = cpu.next_eip.wrapping_sub(d.len as u32);
            cpu.end_block();
            return Ok(());
        }
        let go_on = body(cpu)?;
        r.dec_count(cpu);
        n += 1;
        if !go_on {
            break;
        }
    }
    Ok(())
}

/// H:395 The bulk path of `rep movs` and `rep stos`, which kernels use for
/// every memcpy, memset and page clear: while the direction is forward and
/// the operands' pages are in the TLB, copy as many whole elements as fit in
/// the current pages with one host copy, then update the registers as the
/// element-by-element loop would have.  Anything unusual (a TLB miss, a
/// backward copy, an overlap that the forward element order makes visible,
/// 16-bit addressing) takes the general loop for one element, which also
/// refills the TLB.  Returns the elements done.
fn bulk(cpu: &mut Cpu, d: &DInsn, r: &Regs, store_only: bool) -> u32 {
    let size = elem(d) as u32;
    debug_assert!(!r.a16 && r.step == size);
    let count = cpu.regs[ECX];
    let edi = cpu.regs[EDI];
    let t = cpu.lin(SegReg::Es, edi);
    let mut n = count.min((0x1000 - (t & 0xfff)) / size).min(SLICE);
    let dst = match cpu.tlb_write_hit(t, 1) {
        Some(p) => p,
        None => return 0,
    };
    if store_only {
        if n == 0 {
            return 0;
        }
        let v = cpu.regs[EAX];
        // SAFETY: the write TLB maps the whole page, and n elements from t
        // stay inside it.
        unsafe {
            match size {
                1 => std::ptr::write_bytes(dst, v as u8, n as usize),
                2 => (0..n as usize).for_each(|k| std::ptr::write_unaligned((dst as *mut u16).add(k), v as u16)),
                _ => (0..n as usize).for_each(|k| std::ptr::write_unaligned((dst as *mut u32).add(k), v)),
            }
        }
        cpu.regs[EDI] = edi.wrapping_add(n * size);
    } else {
        let src_seg = super::seg_of(d.i.memory_segment());
        let esi = cpu.regs[ESI];
        let s = cpu.lin(src_seg, esi);
        n = n.min((0x1000 - (s & 0xfff)) / size);
        let src = match cpu.tlb_read_hit(s, 1) {
            Some(p) => p,
            None => return 0,
        };
        let bytes = (n * size) as usize;
        // A forward element copy into a destination that starts inside the
        // source repeats the source pattern; a plain memmove would not.
        let overlap = (dst as usize) > (src as usize) && (dst as usize) < (src as usize) + bytes;
        if n == 0 || overlap {
            return 0;
        }
        // SAFETY: both ranges lie within pages the TLB maps, and the
        // overlapping case that would differ from memmove was excluded.
        unsafe { std::ptr::copy(src, dst, bytes) };
        cpu.regs[ESI] = esi.wrapping_add(n * size);
        cpu.regs[EDI] = edi.wrapping_add(n * size);
    }
    cpu.regs[ECX] = count - n;
    n
}

/// Drive `bulk`, falling back to single elements (`one`) where it cannot
/// go, for at most a slice of work before coming back after the event check.
fn rep_bulk(cpu: &mut Cpu, d: &DInsn, r: &Regs, store_only: bool, mut one: impl FnMut(&mut Cpu) -> Result<(), crate::cpu::state::Fault>) -> R {
    let mut done = 0u32;
    while cpu.regs[ECX] != 0 {
        if done >= SLICE {
            cpu.next_eip = cpu.next_eip.wrapping_sub(d.len as u32);
            cpu.end_block();
            return Ok(());
        }
        let n = bulk(cpu, d, r, store_only);
        if n > 0 {
            done += n;
            continue;
        }
        one(cpu)?;
        cpu.regs[ECX] -= 1;
        done += 1;
    }
    Ok(())
}

pub fn movs(cpu: &mut Cpu, d: &DInsn) -> R {
    let r = Regs::new(cpu, d);
    if rep(d) && !r.a16 && r.step == elem(d) as u32 {
        let size = elem(d);
        let src_seg = super::seg_of(d.i.memory_segment());
        return rep_bulk(cpu, d, &r, false, |cpu| {
            let s = cpu.lin(src_seg, cpu.regs[ESI]);
            let v = cpu.read_sized(s, size)?;
            let t = cpu.lin(SegReg::Es, cpu.regs[EDI]);
            cpu.write_sized(t, size, v)?;
            cpu.regs[ESI] = cpu.regs[ESI].wrapping_add(size as u32);
            cpu.regs[EDI] = cpu.regs[EDI].wrapping_add(size as u32);
            Ok(())
        });
    }
    let size = elem(d);
    let src_seg = super::seg_of(d.i.memory_segment());
    repeat(cpu, d, &r, |cpu| {
        let s = cpu.lin(src_seg, r.get(cpu, ESI));
        let v = cpu.read_sized(s, size)?;
        let t = cpu.lin(SegReg::Es, r.get(cpu, EDI));
        cpu.write_sized(t, size, v)?;
        r.advance(cpu, ESI);
        r.advance(cpu, EDI);
        Ok(true)
    })
}

pub fn stos(cpu: &mut Cpu, d: &DInsn) -> R {
    let r = Regs::new(cpu, d);
    if rep(d) && !r.a16 && r.step == elem(d) as u32 {
        let size = elem(d);
        let v = cpu.regs[EAX];
        return rep_bulk(cpu, d, &r, true, |cpu| {
            let t = cpu.lin(SegReg::Es, cpu.regs[EDI]);
            cpu.write_sized(t, size, v)?;
            cpu.regs[EDI] = cpu.regs[EDI].wrapping_add(size as u32);
            Ok(())
        });
    }
    let size = elem(d);
    let v = cpu.regs[EAX];
    repeat(cpu, d, &r, |cpu| {
        let t = cpu.lin(SegReg::Es, r.get(cpu, EDI));
        cpu.write_sized(t, size, v)?;
        r.advance(cpu, EDI);
        Ok(true)
    })
}

pub fn lods(cpu: &mut Cpu, d: &DInsn) -> R {
    let r = Regs::new(cpu, d);
    let size = elem(d);
    let src_seg = super::seg_of(d.i.memory_segment());
    repeat(cpu, d, &r, |cpu| {
        let s = cpu.lin(src_seg, r.get(cpu, ESI));
        let v = cpu.read_sized(s, size)?;
        match size {
            1 => cpu.regs[EAX] = (cpu.regs[EAX] & !0xff) | v,
            2 => cpu.regs[EAX] = (cpu.regs[EAX] & !0xffff) | v,
            _ => cpu.regs[EAX] = v,
        }
        r.advance(cpu, ESI);
        Ok(true)
    })
}

pub fn cmps(cpu: &mut Cpu, d: &DInsn) -> R {
    let r = Regs::new(cpu, d);
    let size = elem(d);
    let src_seg = super::seg_of(d.i.memory_segment());
    let want_equal = d.i.has_rep_prefix();
    let repeated = rep(d);
    repeat(cpu, d, &r, |cpu| {
        let s = cpu.lin(src_seg, r.get(cpu, ESI));
        let a = cpu.read_sized(s, size)?;
        let t = cpu.lin(SegReg::Es, r.get(cpu, EDI));
        let b = cpu.read_sized(t, size)?;
        cpu.lazy.set(FlagOp::Sub, size * 8, a, b, a.wrapping_sub(b));
        r.advance(cpu, ESI);
        r.advance(cpu, EDI);
        Ok(!repeated || (a == b) == want_equal)
    })
}

pub fn scas(cpu: &mut Cpu, d: &DInsn) -> R {
    let r = Regs::new(cpu, d);
    let size = elem(d);
    let acc = cpu.regs[EAX] & flags::mask(size * 8);
    let want_equal = d.i.has_rep_prefix();
    let repeated = rep(d);
    repeat(cpu, d, &r, |cpu| {
        let t = cpu.lin(SegReg::Es, r.get(cpu, EDI));
        let b = cpu.read_sized(t, size)?;
        cpu.lazy.set(FlagOp::Sub, size * 8, acc, b, acc.wrapping_sub(b));
        r.advance(cpu, EDI);
        Ok(!repeated || (acc == b) == want_equal)
    })
}
