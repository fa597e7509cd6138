//! Arithmetic, logic, shifts, multiplication, division, bit tests, BCD.

use super::{read_op, write_op, R};
use crate::cpu::decode::DInsn;
use crate::cpu::flags::{self, mask, parity, sign_extend, FlagOp};
use crate::cpu::state::{Cpu, Fault, Stop, EAX, EDX};

#[inline(always)]
fn bits(size: u8) -> u8 {
    size * 8
}

// H:310 The two-operand ALU family shares one shape: read both operands,
// compute, write the destination (unless it is cmp or test), and record the
// lazy flags.  The operation is a const generic so each one compiles to its
// own straight-line handler.  `compute` is the one place that says what
// each operation does; the specialised handlers in `fast` use it too.
pub const ADD: u8 = 0;
pub const OR: u8 = 1;
pub const ADC: u8 = 2;
pub const SBB: u8 = 3;
pub const AND: u8 = 4;
pub const SUB: u8 = 5;
pub const XOR: u8 = 6;
pub const CMP: u8 = 7;
pub const TEST: u8 = 8;

/// Whether operation `op` writes its destination (cmp and test do not).
pub const fn writes(op: u8) -> bool {
    op != CMP && op != TEST
}

/// Compute `a OP b` at `bits` bits and record the flags; returns the masked result.
#[inline(always)]
pub fn compute<const OP: u8>(cpu: &mut Cpu, bits: u8, a: u32, b: u32) -> u32 {
    let (res, op) = result::<OP>(a, b, cpu.cf());
    cpu.lazy.set(op, bits, a, b, res);
    res & mask(bits)
}

/// `a OP b` before masking, with the carry-in `cf` for adc/sbb, and the
/// lazy-flags operation that describes it.
#[inline(always)]
pub fn result<const OP: u8>(a: u32, b: u32, cf: bool) -> (u32, FlagOp) {
    match OP {
        ADD => (a.wrapping_add(b), FlagOp::Add),
        OR => (a | b, FlagOp::Logic),
        ADC => (a.wrapping_add(b).wrapping_add(cf as u32), FlagOp::Adc),
        SBB => (a.wrapping_sub(b).wrapping_sub(cf as u32), FlagOp::Sbb),
        AND | TEST => (a & b, FlagOp::Logic),
        SUB | CMP => (a.wrapping_sub(b), FlagOp::Sub),
        _ => (a ^ b, FlagOp::Logic),
    }
}

#[inline(always)]
fn binop<const OP: u8>(cpu: &mut Cpu, d: &DInsn) -> R {
    let size = d.size;
    let b = bits(size);
    let a = read_op(cpu, d, 0, size)?;
    let s = read_op(cpu, d, 1, size)? & mask(b);
    let saved = cpu.lazy;
    let res = compute::<OP>(cpu, b, a, s);
    if writes(OP) {
        if let Err(f) = write_op(cpu, d, 0, size, res) {
            cpu.lazy = saved;
            return Err(f.into());
        }
    }
    Ok(())
}

pub fn add(cpu: &mut Cpu, d: &DInsn) -> R {
    binop::<ADD>(cpu, d)
}
pub fn or(cpu: &mut Cpu, d: &DInsn) -> R {
    binop::<OR>(cpu, d)
}
pub fn adc(cpu: &mut Cpu, d: &DInsn) -> R {
    binop::<ADC>(cpu, d)
}
pub fn sbb(cpu: &mut Cpu, d: &DInsn) -> R {
    binop::<SBB>(cpu, d)
}
pub fn and(cpu: &mut Cpu, d: &DInsn) -> R {
    binop::<AND>(cpu, d)
}
pub fn sub(cpu: &mut Cpu, d: &DInsn) -> R {
    binop::<SUB>(cpu, d)
}
pub fn xor(cpu: &mut Cpu, d: &DInsn) -> R {
    binop::<XOR>(cpu, d)
}
pub fn cmp(cpu: &mut Cpu, d: &DInsn) -> R {
    binop::<CMP>(cpu, d)
}
pub fn test(cpu: &mut Cpu, d: &DInsn) -> R {
    binop::<TEST>(cpu, d)
}

pub fn inc(cpu: &mut Cpu, d: &DInsn) -> R {
    let size = d.size;
    let a = read_op(cpu, d, 0, size)?;
    let res = a.wrapping_add(1);
    write_op(cpu, d, 0, size, res & mask(bits(size)))?;
    cpu.lazy.set(FlagOp::Inc, bits(size), a, 1, res);
    Ok(())
}

pub fn dec(cpu: &mut Cpu, d: &DInsn) -> R {
    let size = d.size;
    let a = read_op(cpu, d, 0, size)?;
    let res = a.wrapping_sub(1);
    write_op(cpu, d, 0, size, res & mask(bits(size)))?;
    cpu.lazy.set(FlagOp::Dec, bits(size), a, 1, res);
    Ok(())
}

pub fn neg(cpu: &mut Cpu, d: &DInsn) -> R {
    let size = d.size;
    let a = read_op(cpu, d, 0, size)?;
    let res = 0u32.wrapping_sub(a);
    write_op(cpu, d, 0, size, res & mask(bits(size)))?;
    cpu.lazy.set(FlagOp::Sub, bits(size), 0, a, res);
    Ok(())
}

pub fn not(cpu: &mut Cpu, d: &DInsn) -> R {
    let size = d.size;
    let a = read_op(cpu, d, 0, size)?;
    write_op(cpu, d, 0, size, !a & mask(bits(size)))?;
    Ok(())
}

/// Shift count: operand 1 (CL or an immediate, or the implicit 1), masked to
/// five bits as every processor since the 80286 does.
#[inline(always)]
fn count(cpu: &mut Cpu, d: &DInsn) -> Result<u32, Fault> {
    if d.i.op_count() < 2 {
        return Ok(1);
    }
    Ok(read_op(cpu, d, 1, 1)? & 0x1f)
}

pub fn shl(cpu: &mut Cpu, d: &DInsn) -> R {
    let size = d.size;
    let a = read_op(cpu, d, 0, size)?;
    let c = count(cpu, d)?;
    if c == 0 {
        return Ok(());
    }
    let res = if c >= 32 { 0 } else { a << c };
    write_op(cpu, d, 0, size, res & mask(bits(size)))?;
    cpu.lazy.set(FlagOp::Shl, bits(size), a, c, res);
    Ok(())
}

pub fn shr(cpu: &mut Cpu, d: &DInsn) -> R {
    let size = d.size;
    let a = read_op(cpu, d, 0, size)?;
    let c = count(cpu, d)?;
    if c == 0 {
        return Ok(());
    }
    let res = a >> c;
    write_op(cpu, d, 0, size, res)?;
    cpu.lazy.set(FlagOp::Shr, bits(size), a, c, res);
    Ok(())
}

pub fn sar(cpu: &mut Cpu, d: &DInsn) -> R {
    let size = d.size;
    let a = read_op(cpu, d, 0, size)?;
    let c = count(cpu, d)?;
    if c == 0 {
        return Ok(());
    }
    let res = ((sign_extend(a, bits(size)) as i32) >> c.min(31)) as u32 & mask(bits(size));
    write_op(cpu, d, 0, size, res)?;
    cpu.lazy.set(FlagOp::Sar, bits(size), a, c, res);
    Ok(())
}

/// Set CF and OF after materialising the other flags (rotates and friends).
#[inline(always)]
fn set_cf_of(cpu: &mut Cpu, cf: bool, of: bool) {
    cpu.materialize_flags();
    let mut f = cpu.eflags & !(flags::CF | flags::OF);
    if cf {
        f |= flags::CF;
    }
    if of {
        f |= flags::OF;
    }
    cpu.eflags = f;
    cpu.lazy.cf = cf;
}

pub fn rol(cpu: &mut Cpu, d: &DInsn) -> R {
    let size = d.size;
    let b = bits(size) as u32;
    let a = read_op(cpu, d, 0, size)?;
    let c = count(cpu, d)?;
    if c == 0 {
        return Ok(());
    }
    let r = c % b;
    let res = if r == 0 { a } else { ((a << r) | (a >> (b - r))) & mask(b as u8) };
    write_op(cpu, d, 0, size, res)?;
    let cf = res & 1 != 0;
    let of = ((res >> (b - 1)) & 1 != 0) ^ cf;
    set_cf_of(cpu, cf, of);
    Ok(())
}

pub fn ror(cpu: &mut Cpu, d: &DInsn) -> R {
    let size = d.size;
    let b = bits(size) as u32;
    let a = read_op(cpu, d, 0, size)?;
    let c = count(cpu, d)?;
    if c == 0 {
        return Ok(());
    }
    let r = c % b;
    let res = if r == 0 { a } else { ((a >> r) | (a << (b - r))) & mask(b as u8) };
    write_op(cpu, d, 0, size, res)?;
    let msb = (res >> (b - 1)) & 1 != 0;
    let next = (res >> (b - 2)) & 1 != 0;
    set_cf_of(cpu, msb, msb ^ next);
    Ok(())
}

pub fn rcl(cpu: &mut Cpu, d: &DInsn) -> R {
    let size = d.size;
    let b = bits(size) as u32;
    let a = read_op(cpu, d, 0, size)?;
    let c = count(cpu, d)? % (b + 1);
    if c == 0 {
        // A count that is a multiple of size+1 changes nothing, flags included.
        return Ok(());
    }
    let mut v = a as u64 | ((cpu.cf() as u64) << b);
    let w = b + 1;
    v = ((v << c) | (v >> (w - c))) & ((1u64 << w) - 1);
    let res = (v as u32) & mask(b as u8);
    let cf = (v >> b) & 1 != 0;
    write_op(cpu, d, 0, size, res)?;
    let of = ((res >> (b - 1)) & 1 != 0) ^ cf;
    set_cf_of(cpu, cf, of);
    Ok(())
}

pub fn rcr(cpu: &mut Cpu, d: &DInsn) -> R {
    let size = d.size;
    let b = bits(size) as u32;
    let a = read_op(cpu, d, 0, size)?;
    let c = count(cpu, d)? % (b + 1);
    if c == 0 {
        return Ok(());
    }
    let mut v = a as u64 | ((cpu.cf() as u64) << b);
    let w = b + 1;
    v = ((v >> c) | (v << (w - c))) & ((1u64 << w) - 1);
    let res = (v as u32) & mask(b as u8);
    let cf = (v >> b) & 1 != 0;
    write_op(cpu, d, 0, size, res)?;
    let of = ((res >> (b - 1)) & 1 != 0) ^ ((res >> (b - 2)) & 1 != 0);
    set_cf_of(cpu, cf, of);
    Ok(())
}

/// Set every arithmetic flag from a result, with explicit CF, OF and AF.
#[inline(always)]
fn set_result_flags(cpu: &mut Cpu, res: u32, b: u8, cf: bool, of: bool, af: bool) {
    let res = res & mask(b);
    let mut f = cpu.eflags & !flags::ARITH;
    if cf {
        f |= flags::CF;
    }
    if of {
        f |= flags::OF;
    }
    if af {
        f |= flags::AF;
    }
    if res == 0 {
        f |= flags::ZF;
    }
    if (res >> (b - 1)) & 1 != 0 {
        f |= flags::SF;
    }
    if parity(res) {
        f |= flags::PF;
    }
    cpu.eflags = f;
    cpu.lazy.op = FlagOp::Eager;
    cpu.lazy.cf = cf;
}

fn double_shift(cpu: &mut Cpu, d: &DInsn, left: bool) -> R {
    let size = d.size;
    let b = bits(size) as u32;
    let dst = read_op(cpu, d, 0, size)?;
    let src = read_op(cpu, d, 1, size)?;
    let c = read_op(cpu, d, 2, 1)? & 0x1f;
    if c == 0 {
        return Ok(());
    }
    // Work on a 96-bit window (dst:src:dst for 16-bit operands, which is
    // what processors do for counts above 16).
    let (res, cf) = if b == 32 {
        if left {
            let v = ((dst as u64) << 32) | src as u64;
            ((v << c >> 32) as u32, (dst >> (32 - c)) & 1 != 0)
        } else {
            let v = ((src as u64) << 32) | dst as u64;
            ((v >> c) as u32, (dst >> (c - 1)) & 1 != 0)
        }
    } else if left {
        let v = ((dst as u64) << 32) | ((src as u64) << 16) | dst as u64;
        let r = ((v << c) >> 32) as u32 & 0xffff;
        let cf = (v >> (48 - c)) & 1 != 0;
        (r, cf)
    } else {
        let v = ((dst as u64) << 32) | ((src as u64) << 16) | dst as u64;
        let r = (v >> c) as u32 & 0xffff;
        let cf = (v >> (c - 1)) & 1 != 0;
        (r, cf)
    };
    write_op(cpu, d, 0, size, res)?;
    let of = ((res ^ dst) >> (b - 1)) & 1 != 0;
    set_result_flags(cpu, res, b as u8, cf, of, false);
    Ok(())
}

pub fn shld(cpu: &mut Cpu, d: &DInsn) -> R {
    double_shift(cpu, d, true)
}

pub fn shrd(cpu: &mut Cpu, d: &DInsn) -> R {
    double_shift(cpu, d, false)
}

// H:320 Multiplication and division have implicit operands (AL/AX/EAX and
// AH/DX/EDX).  Division checks for a zero divisor and for a quotient that
// does not fit *before* writing anything: #DE must leave the registers
// as they were.
pub fn mul(cpu: &mut Cpu, d: &DInsn) -> R {
    let size = d.size;
    let s = read_op(cpu, d, 0, size)? as u64;
    let hi_nonzero = match size {
        1 => {
            let r = (cpu.regs[EAX] & 0xff) as u64 * s;
            cpu.regs[EAX] = (cpu.regs[EAX] & 0xffff_0000) | (r as u32 & 0xffff);
            r >> 8 != 0
        }
        2 => {
            let r = (cpu.regs[EAX] & 0xffff) as u64 * s;
            cpu.regs[EAX] = (cpu.regs[EAX] & 0xffff_0000) | (r as u32 & 0xffff);
            cpu.regs[EDX] = (cpu.regs[EDX] & 0xffff_0000) | ((r >> 16) as u32 & 0xffff);
            r >> 16 != 0
        }
        _ => {
            let r = cpu.regs[EAX] as u64 * s;
            cpu.regs[EAX] = r as u32;
            cpu.regs[EDX] = (r >> 32) as u32;
            r >> 32 != 0
        }
    };
    let low = cpu.regs[EAX] & mask(bits(size));
    set_result_flags(cpu, low, bits(size), hi_nonzero, hi_nonzero, false);
    Ok(())
}

pub fn imul(cpu: &mut Cpu, d: &DInsn) -> R {
    let size = d.size;
    let b = bits(size);
    if d.i.op_count() == 1 {
        let s = sign_extend(read_op(cpu, d, 0, size)?, b) as i32 as i64;
        let overflow = match size {
            1 => {
                let r = (cpu.regs[EAX] as u8 as i8 as i64) * s;
                cpu.regs[EAX] = (cpu.regs[EAX] & 0xffff_0000) | (r as u32 & 0xffff);
                r != r as i8 as i64
            }
            2 => {
                let r = (cpu.regs[EAX] as u16 as i16 as i64) * s;
                cpu.regs[EAX] = (cpu.regs[EAX] & 0xffff_0000) | (r as u32 & 0xffff);
                cpu.regs[EDX] = (cpu.regs[EDX] & 0xffff_0000) | ((r >> 16) as u32 & 0xffff);
                r != r as i16 as i64
            }
            _ => {
                let r = (cpu.regs[EAX] as i32 as i64) * s;
                cpu.regs[EAX] = r as u32;
                cpu.regs[EDX] = (r >> 32) as u32;
                r != r as i32 as i64
            }
        };
        let low = cpu.regs[EAX] & mask(b);
        set_result_flags(cpu, low, b, overflow, overflow, false);
        return Ok(());
    }
    // Two- and three-operand forms: dst = src1 * src2, truncated.
    let (x, y) = if d.i.op_count() == 2 {
        (read_op(cpu, d, 0, size)?, read_op(cpu, d, 1, size)?)
    } else {
        (read_op(cpu, d, 1, size)?, read_op(cpu, d, 2, size)?)
    };
    let r = (sign_extend(x, b) as i32 as i64) * (sign_extend(y, b) as i32 as i64);
    let t = r as u32 & mask(b);
    let overflow = sign_extend(t, b) as i32 as i64 != r;
    write_op(cpu, d, 0, size, t)?;
    set_result_flags(cpu, t, b, overflow, overflow, false);
    Ok(())
}

pub fn div(cpu: &mut Cpu, d: &DInsn) -> R {
    let size = d.size;
    let s = read_op(cpu, d, 0, size)? as u64;
    if s == 0 {
        return Err(Stop::fault(Fault::DE));
    }
    match size {
        1 => {
            let n = (cpu.regs[EAX] & 0xffff) as u64;
            let (q, r) = (n / s, n % s);
            if q > 0xff {
                return Err(Stop::fault(Fault::DE));
            }
            cpu.regs[EAX] = (cpu.regs[EAX] & 0xffff_0000) | ((r as u32) << 8) | q as u32;
        }
        2 => {
            let n = ((cpu.regs[EDX] & 0xffff) as u64) << 16 | (cpu.regs[EAX] & 0xffff) as u64;
            let (q, r) = (n / s, n % s);
            if q > 0xffff {
                return Err(Stop::fault(Fault::DE));
            }
            cpu.regs[EAX] = (cpu.regs[EAX] & 0xffff_0000) | q as u32;
            cpu.regs[EDX] = (cpu.regs[EDX] & 0xffff_0000) | r as u32;
        }
        _ => {
            let n = (cpu.regs[EDX] as u64) << 32 | cpu.regs[EAX] as u64;
            let (q, r) = (n / s, n % s);
            if q > 0xffff_ffff {
                return Err(Stop::fault(Fault::DE));
            }
            cpu.regs[EAX] = q as u32;
            cpu.regs[EDX] = r as u32;
        }
    }
    Ok(())
}

pub fn idiv(cpu: &mut Cpu, d: &DInsn) -> R {
    let size = d.size;
    let b = bits(size);
    let s = sign_extend(read_op(cpu, d, 0, size)?, b) as i32 as i64;
    if s == 0 {
        return Err(Stop::fault(Fault::DE));
    }
    match size {
        1 => {
            let n = cpu.regs[EAX] as u16 as i16 as i64;
            let (q, r) = (n / s, n % s);
            if q != q as i8 as i64 {
                return Err(Stop::fault(Fault::DE));
            }
            cpu.regs[EAX] = (cpu.regs[EAX] & 0xffff_0000) | ((r as u32 & 0xff) << 8) | (q as u32 & 0xff);
        }
        2 => {
            let n = (((cpu.regs[EDX] & 0xffff) << 16) | (cpu.regs[EAX] & 0xffff)) as i32 as i64;
            let (q, r) = (n / s, n % s);
            if q != q as i16 as i64 {
                return Err(Stop::fault(Fault::DE));
            }
            cpu.regs[EAX] = (cpu.regs[EAX] & 0xffff_0000) | (q as u32 & 0xffff);
            cpu.regs[EDX] = (cpu.regs[EDX] & 0xffff_0000) | (r as u32 & 0xffff);
        }
        _ => {
            let n = ((cpu.regs[EDX] as u64) << 32 | cpu.regs[EAX] as u64) as i64;
            // i64::MIN / -1 overflows in Rust too: check in i128.
            let (q, r) = ((n as i128) / (s as i128), (n as i128) % (s as i128));
            if q != q as i32 as i128 {
                return Err(Stop::fault(Fault::DE));
            }
            cpu.regs[EAX] = q as u32;
            cpu.regs[EDX] = r as u32;
        }
    }
    Ok(())
}

// H:330 Bit tests.  With a register bit offset and a memory operand the
// offset is signed and may reach far outside the addressed word, so the
// address moves by whole operand-sized words first.
fn bit_op(cpu: &mut Cpu, d: &DInsn, action: u8) -> R {
    let size = d.size;
    let b = bits(size) as u32;
    let off = read_op(cpu, d, 1, size)?;
    let is_mem = d.i.op0_kind() == iced_x86::OpKind::Memory;
    let reg_offset = d.i.op1_kind() == iced_x86::OpKind::Register;
    let (val, lin, bit) = if is_mem {
        let base = super::mem_lin(cpu, d);
        let (lin, bit) = if reg_offset {
            let soff = sign_extend(off, size * 8) as i32;
            let words = soff >> (b.trailing_zeros());
            (base.wrapping_add((words as u32).wrapping_mul(size as u32)), (soff as u32) & (b - 1))
        } else {
            (base, off & (b - 1))
        };
        (cpu.read_sized(lin, size)?, Some(lin), bit)
    } else {
        (read_op(cpu, d, 0, size)?, None, off & (b - 1))
    };
    let cf = (val >> bit) & 1 != 0;
    let new = match action {
        1 => val | (1 << bit),
        2 => val & !(1 << bit),
        3 => val ^ (1 << bit),
        _ => val,
    };
    if action != 0 {
        match lin {
            Some(l) => cpu.write_sized(l, size, new)?,
            None => write_op(cpu, d, 0, size, new)?,
        }
    }
    cpu.set_flag(flags::CF, cf);
    Ok(())
}

pub fn bt(cpu: &mut Cpu, d: &DInsn) -> R {
    bit_op(cpu, d, 0)
}
pub fn bts(cpu: &mut Cpu, d: &DInsn) -> R {
    bit_op(cpu, d, 1)
}
pub fn btr(cpu: &mut Cpu, d: &DInsn) -> R {
    bit_op(cpu, d, 2)
}
pub fn btc(cpu: &mut Cpu, d: &DInsn) -> R {
    bit_op(cpu, d, 3)
}

pub fn bsf(cpu: &mut Cpu, d: &DInsn) -> R {
    let size = d.size;
    let s = read_op(cpu, d, 1, size)?;
    if s == 0 {
        cpu.set_flag(flags::ZF, true);
    } else {
        write_op(cpu, d, 0, size, s.trailing_zeros())?;
        cpu.set_flag(flags::ZF, false);
    }
    Ok(())
}

pub fn bsr(cpu: &mut Cpu, d: &DInsn) -> R {
    let size = d.size;
    let s = read_op(cpu, d, 1, size)?;
    if s == 0 {
        cpu.set_flag(flags::ZF, true);
    } else {
        write_op(cpu, d, 0, size, 31 - s.leading_zeros())?;
        cpu.set_flag(flags::ZF, false);
    }
    Ok(())
}

// H:340 Decimal adjusts, straight from the SDM's pseudo-code.
fn al(cpu: &Cpu) -> u32 {
    cpu.regs[EAX] & 0xff
}

fn set_al(cpu: &mut Cpu, v: u32) {
    cpu.regs[EAX] = (cpu.regs[EAX] & !0xff) | (v & 0xff);
}

pub fn daa(cpu: &mut Cpu, _: &DInsn) -> R {
    let old_al = al(cpu);
    let old_cf = cpu.cf();
    let mut a = old_al;
    let mut cf = false;
    let af = if (a & 0xf) > 9 || cpu.af() {
        cf = old_cf || a + 6 > 0xff;
        a = (a + 6) & 0xff;
        true
    } else {
        false
    };
    if old_al > 0x99 || old_cf {
        a = (a + 0x60) & 0xff;
        cf = true;
    }
    set_al(cpu, a);
    cpu.materialize_flags();
    set_result_flags(cpu, a, 8, cf, false, af);
    Ok(())
}

pub fn das(cpu: &mut Cpu, _: &DInsn) -> R {
    let old_al = al(cpu);
    let old_cf = cpu.cf();
    let mut a = old_al;
    let mut cf = false;
    let af = if (a & 0xf) > 9 || cpu.af() {
        cf = old_cf || a < 6;
        a = a.wrapping_sub(6) & 0xff;
        true
    } else {
        false
    };
    if old_al > 0x99 || old_cf {
        a = a.wrapping_sub(0x60) & 0xff;
        cf = true;
    }
    set_al(cpu, a);
    cpu.materialize_flags();
    set_result_flags(cpu, a, 8, cf, false, af);
    Ok(())
}

pub fn aaa(cpu: &mut Cpu, _: &DInsn) -> R {
    let adjust = (al(cpu) & 0xf) > 9 || cpu.af();
    if adjust {
        let ax = (cpu.regs[EAX] & 0xffff).wrapping_add(0x106);
        cpu.regs[EAX] = (cpu.regs[EAX] & 0xffff_0000) | (ax & 0xffff);
    }
    set_al(cpu, al(cpu) & 0xf);
    cpu.materialize_flags();
    let a = al(cpu);
    set_result_flags(cpu, a, 8, adjust, false, adjust);
    Ok(())
}

pub fn aas(cpu: &mut Cpu, _: &DInsn) -> R {
    let adjust = (al(cpu) & 0xf) > 9 || cpu.af();
    if adjust {
        let ax = (cpu.regs[EAX] & 0xffff).wrapping_sub(6);
        let ah = ((ax >> 8).wrapping_sub(1)) & 0xff;
        cpu.regs[EAX] = (cpu.regs[EAX] & 0xffff_0000) | (ah << 8) | (ax & 0xff);
    }
    set_al(cpu, al(cpu) & 0xf);
    cpu.materialize_flags();
    let a = al(cpu);
    set_result_flags(cpu, a, 8, adjust, false, adjust);
    Ok(())
}

pub fn aam(cpu: &mut Cpu, d: &DInsn) -> R {
    let base = d.i.immediate8() as u32;
    if base == 0 {
        return Err(Stop::fault(Fault::DE));
    }
    let a = al(cpu);
    let (ah, al_) = (a / base, a % base);
    cpu.regs[EAX] = (cpu.regs[EAX] & 0xffff_0000) | (ah << 8) | al_;
    cpu.materialize_flags();
    set_result_flags(cpu, al_, 8, false, false, false);
    Ok(())
}

pub fn aad(cpu: &mut Cpu, d: &DInsn) -> R {
    let base = d.i.immediate8() as u32;
    let ah = (cpu.regs[EAX] >> 8) & 0xff;
    let a = al(cpu);
    let prod = (ah * base) & 0xff;
    let res = (a + prod) & 0xff;
    cpu.regs[EAX] = (cpu.regs[EAX] & 0xffff_0000) | res;
    // Silicon computes the flags of the byte addition AL + AH*base.
    cpu.lazy.set(FlagOp::Add, 8, a, prod, a + prod);
    Ok(())
}
