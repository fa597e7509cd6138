//! Data movement, the stack, flag instructions and conditional moves.

use iced_x86::{OpKind, Register};

use super::{ea, get_reg, read_op, set_reg, write_op, R};
use crate::cpu::decode::DInsn;
use crate::cpu::flags::{self, mask, sign_extend, FlagOp};
use crate::cpu::state::{Cpu, SegReg, EAX, EBX, ESP};

pub fn nop(_: &mut Cpu, _: &DInsn) -> R {
    Ok(())
}

pub fn mov(cpu: &mut Cpu, d: &DInsn) -> R {
    // Reading a segment register into a 32-bit register zero-extends it.
    let size = if d.i.op1_kind() == OpKind::Register && d.i.op1_register().is_segment_register() {
        if d.i.op0_kind() == OpKind::Register {
            d.i.op0_register().size() as u8
        } else {
            2
        }
    } else {
        d.size
    };
    let v = read_op(cpu, d, 1, size)?;
    write_op(cpu, d, 0, size, v)?;
    Ok(())
}

pub fn movzx(cpu: &mut Cpu, d: &DInsn) -> R {
    let s = super::op_size(&d.i, 1);
    let v = read_op(cpu, d, 1, s)?;
    write_op(cpu, d, 0, d.size, v)?;
    Ok(())
}

pub fn movsx(cpu: &mut Cpu, d: &DInsn) -> R {
    let s = super::op_size(&d.i, 1);
    let v = sign_extend(read_op(cpu, d, 1, s)?, s * 8);
    write_op(cpu, d, 0, d.size, v & mask(d.size * 8))?;
    Ok(())
}

pub fn lea(cpu: &mut Cpu, d: &DInsn) -> R {
    let a = ea(cpu, d);
    set_reg(cpu, d.i.op0_register(), a & mask(d.size * 8));
    Ok(())
}

pub fn xchg(cpu: &mut Cpu, d: &DInsn) -> R {
    let size = d.size;
    let a = read_op(cpu, d, 0, size)?;
    let b = read_op(cpu, d, 1, size)?;
    // Write memory first (it may fault); registers cannot.
    if d.i.op0_kind() == OpKind::Memory {
        write_op(cpu, d, 0, size, b)?;
        write_op(cpu, d, 1, size, a)?;
    } else {
        write_op(cpu, d, 1, size, a)?;
        write_op(cpu, d, 0, size, b)?;
    }
    Ok(())
}

pub fn cmpxchg(cpu: &mut Cpu, d: &DInsn) -> R {
    let size = d.size;
    let m = mask(size * 8);
    let dst = read_op(cpu, d, 0, size)?;
    let src = read_op(cpu, d, 1, size)?;
    let acc = cpu.regs[EAX] & m;
    if acc == dst {
        write_op(cpu, d, 0, size, src)?;
    } else {
        // The processor writes the old value back to a memory destination.
        write_op(cpu, d, 0, size, dst)?;
        let r = match size {
            1 => Register::AL,
            2 => Register::AX,
            _ => Register::EAX,
        };
        set_reg(cpu, r, dst);
    }
    cpu.lazy.set(FlagOp::Sub, size * 8, acc, dst, acc.wrapping_sub(dst));
    Ok(())
}

pub fn cmpxchg8b(cpu: &mut Cpu, d: &DInsn) -> R {
    let lin = super::mem_lin(cpu, d);
    let cur = cpu.read_u64(lin)?;
    let expect = (cpu.regs[crate::cpu::state::EDX] as u64) << 32 | cpu.regs[EAX] as u64;
    if cur == expect {
        let new = (cpu.regs[crate::cpu::state::ECX] as u64) << 32 | cpu.regs[EBX] as u64;
        cpu.write_u64(lin, new)?;
        cpu.set_flag(flags::ZF, true);
    } else {
        cpu.write_u64(lin, cur)?;
        cpu.regs[EAX] = cur as u32;
        cpu.regs[crate::cpu::state::EDX] = (cur >> 32) as u32;
        cpu.set_flag(flags::ZF, false);
    }
    Ok(())
}

pub fn xadd(cpu: &mut Cpu, d: &DInsn) -> R {
    let size = d.size;
    let dst = read_op(cpu, d, 0, size)?;
    let src = read_op(cpu, d, 1, size)?;
    let sum = dst.wrapping_add(src);
    // SRC <- DEST, then DEST <- sum: with the same register twice the sum
    // wins.  A memory destination is written first, since it may fault.
    if d.i.op0_kind() == OpKind::Memory {
        write_op(cpu, d, 0, size, sum & mask(size * 8))?;
        write_op(cpu, d, 1, size, dst)?;
    } else {
        write_op(cpu, d, 1, size, dst)?;
        write_op(cpu, d, 0, size, sum & mask(size * 8))?;
    }
    cpu.lazy.set(FlagOp::Add, size * 8, dst, src, sum);
    Ok(())
}

pub fn bswap(cpu: &mut Cpu, d: &DInsn) -> R {
    let r = d.i.op0_register();
    let v = get_reg(cpu, r);
    // With a 16-bit operand the result is undefined; silicon gives zero.
    let out = if d.size == 2 { 0 } else { v.swap_bytes() };
    set_reg(cpu, r, out);
    Ok(())
}

/// Width of a push or pop in bytes, from the decoder's stack adjustment.
#[inline(always)]
fn stack_width(d: &DInsn) -> u8 {
    d.i.stack_pointer_increment().unsigned_abs() as u8
}

pub fn push(cpu: &mut Cpu, d: &DInsn) -> R {
    let w = stack_width(d);
    let v = read_op(cpu, d, 0, if d.i.op0_kind() == OpKind::Register && d.i.op0_register().is_segment_register() { 2 } else { w })?;
    if w == 2 {
        cpu.push16(v as u16)?;
    } else if d.i.op0_kind() == OpKind::Register && d.i.op0_register().is_segment_register() {
        // Modern processors write only the low 16 bits of the slot.
        let sp = cpu.regs[ESP].wrapping_sub(4);
        let lin = cpu.lin(SegReg::Ss, sp);
        cpu.write_u16(lin, v as u16)?;
        cpu.regs[ESP] = sp;
    } else {
        cpu.push32(v)?;
    }
    Ok(())
}

pub fn pop(cpu: &mut Cpu, d: &DInsn) -> R {
    let w = stack_width(d);
    if d.i.op0_kind() == OpKind::Register && d.i.op0_register().is_segment_register() {
        let sel = cpu.peek_stack(0, 2)? as u16;
        let seg = super::seg_of(d.i.op0_register());
        super::system::load_segment(cpu, seg, sel)?;
        cpu.regs[ESP] = cpu.regs[ESP].wrapping_add(w as u32);
        return Ok(());
    }
    let v = cpu.peek_stack(0, w)?;
    let old_sp = cpu.regs[ESP];
    // A memory destination is addressed with the incremented ESP.
    cpu.regs[ESP] = old_sp.wrapping_add(w as u32);
    if let Err(f) = write_op(cpu, d, 0, w, v) {
        cpu.regs[ESP] = old_sp;
        return Err(f.into());
    }
    Ok(())
}

pub fn pushad(cpu: &mut Cpu, _: &DInsn) -> R {
    let sp = cpu.regs[ESP];
    let lin = cpu.lin(SegReg::Ss, sp.wrapping_sub(32));
    cpu.probe_write(lin, 32)?;
    for r in [0, 1, 2, 3] {
        let v = cpu.regs[r];
        cpu.push32(v)?;
    }
    cpu.push32(sp)?;
    for r in [5, 6, 7] {
        let v = cpu.regs[r];
        cpu.push32(v)?;
    }
    Ok(())
}

pub fn pusha(cpu: &mut Cpu, _: &DInsn) -> R {
    let sp = cpu.regs[ESP];
    let lin = cpu.lin(SegReg::Ss, sp.wrapping_sub(16));
    cpu.probe_write(lin, 16)?;
    for r in [0, 1, 2, 3] {
        let v = cpu.regs[r] as u16;
        cpu.push16(v)?;
    }
    cpu.push16(sp as u16)?;
    for r in [5, 6, 7] {
        let v = cpu.regs[r] as u16;
        cpu.push16(v)?;
    }
    Ok(())
}

pub fn popad(cpu: &mut Cpu, _: &DInsn) -> R {
    let mut vals = [0u32; 8];
    for (k, v) in vals.iter_mut().enumerate() {
        *v = cpu.peek_stack(4 * k as u32, 4)?;
    }
    // Order on the stack: EDI ESI EBP (ESP) EBX EDX ECX EAX.
    for (k, r) in [7usize, 6, 5, 4, 3, 2, 1, 0].iter().enumerate() {
        if *r != ESP {
            cpu.regs[*r] = vals[k];
        }
    }
    cpu.regs[ESP] = cpu.regs[ESP].wrapping_add(32);
    Ok(())
}

pub fn popa(cpu: &mut Cpu, _: &DInsn) -> R {
    let mut vals = [0u32; 8];
    for (k, v) in vals.iter_mut().enumerate() {
        *v = cpu.peek_stack(2 * k as u32, 2)?;
    }
    for (k, r) in [7usize, 6, 5, 4, 3, 2, 1, 0].iter().enumerate() {
        if *r != ESP {
            cpu.regs[*r] = (cpu.regs[*r] & 0xffff_0000) | vals[k];
        }
    }
    cpu.regs[ESP] = cpu.regs[ESP].wrapping_add(16);
    Ok(())
}

pub fn pushfd(cpu: &mut Cpu, _: &DInsn) -> R {
    // VM and RF are never pushed.
    let f = cpu.get_eflags() & !(flags::VM | flags::RF);
    cpu.push32(f)?;
    Ok(())
}

pub fn pushf(cpu: &mut Cpu, _: &DInsn) -> R {
    let f = cpu.get_eflags() as u16;
    cpu.push16(f)?;
    Ok(())
}

/// H:350 popf cannot raise privilege: below ring 0 IOPL is kept, and IF is
/// kept unless CPL <= IOPL (never, for lguest guests: IOPL is always 0).
/// The Linux decompressor clears EFLAGS with popf at ring 1 and relies on
/// exactly this silent behaviour.
pub fn write_flags_from_pop(cpu: &mut Cpu, v: u32, width: u8) {
    let mut writable = flags::ARITH | flags::TF | flags::DF | flags::NT;
    if width == 4 {
        writable |= flags::AC | flags::ID;
    }
    let iopl = (cpu.eflags >> 12) & 3;
    if cpu.cpl() == 0 {
        writable |= flags::IOPL;
    }
    if (cpu.cpl() as u32) <= iopl {
        writable |= flags::IF;
    }
    let old = cpu.get_eflags();
    cpu.set_eflags((old & !writable) | (v & writable));
}

pub fn popfd(cpu: &mut Cpu, _: &DInsn) -> R {
    let v = cpu.peek_stack(0, 4)?;
    cpu.regs[ESP] = cpu.regs[ESP].wrapping_add(4);
    write_flags_from_pop(cpu, v, 4);
    Ok(())
}

pub fn popf(cpu: &mut Cpu, _: &DInsn) -> R {
    let v = cpu.peek_stack(0, 2)?;
    cpu.regs[ESP] = cpu.regs[ESP].wrapping_add(2);
    write_flags_from_pop(cpu, v, 2);
    Ok(())
}

pub fn lahf(cpu: &mut Cpu, _: &DInsn) -> R {
    let f = cpu.get_eflags() & (flags::SF | flags::ZF | flags::AF | flags::PF | flags::CF);
    cpu.regs[EAX] = (cpu.regs[EAX] & 0xffff_00ff) | ((f | 2) << 8);
    Ok(())
}

pub fn sahf(cpu: &mut Cpu, _: &DInsn) -> R {
    let ah = (cpu.regs[EAX] >> 8) & 0xff;
    let m = flags::SF | flags::ZF | flags::AF | flags::PF | flags::CF;
    cpu.materialize_flags();
    cpu.eflags = (cpu.eflags & !m) | (ah & m);
    cpu.lazy.cf = ah & flags::CF != 0;
    Ok(())
}

pub fn cbw(cpu: &mut Cpu, _: &DInsn) -> R {
    let v = cpu.regs[EAX] as u8 as i8 as i16 as u16 as u32;
    cpu.regs[EAX] = (cpu.regs[EAX] & 0xffff_0000) | v;
    Ok(())
}

pub fn cwde(cpu: &mut Cpu, _: &DInsn) -> R {
    cpu.regs[EAX] = cpu.regs[EAX] as u16 as i16 as i32 as u32;
    Ok(())
}

pub fn cwd(cpu: &mut Cpu, _: &DInsn) -> R {
    let hi = if cpu.regs[EAX] & 0x8000 != 0 { 0xffff } else { 0 };
    let edx = &mut cpu.regs[crate::cpu::state::EDX];
    *edx = (*edx & 0xffff_0000) | hi;
    Ok(())
}

pub fn cdq(cpu: &mut Cpu, _: &DInsn) -> R {
    cpu.regs[crate::cpu::state::EDX] = ((cpu.regs[EAX] as i32) >> 31) as u32;
    Ok(())
}

pub fn xlat(cpu: &mut Cpu, d: &DInsn) -> R {
    let off = if d.addr16 {
        (cpu.regs[EBX].wrapping_add(cpu.regs[EAX] & 0xff)) & 0xffff
    } else {
        cpu.regs[EBX].wrapping_add(cpu.regs[EAX] & 0xff)
    };
    let lin = cpu.lin(super::seg_of(d.i.memory_segment()), off);
    let v = cpu.read_u8(lin)? as u32;
    cpu.regs[EAX] = (cpu.regs[EAX] & !0xff) | v;
    Ok(())
}

pub fn salc(cpu: &mut Cpu, _: &DInsn) -> R {
    let v = if cpu.cf() { 0xff } else { 0 };
    cpu.regs[EAX] = (cpu.regs[EAX] & !0xff) | v;
    Ok(())
}

#[inline(always)]
fn cc(d: &DInsn) -> u8 {
    (d.i.condition_code() as u8).wrapping_sub(1)
}

pub fn setcc(cpu: &mut Cpu, d: &DInsn) -> R {
    let v = cpu.cond(cc(d)) as u32;
    write_op(cpu, d, 0, 1, v)?;
    Ok(())
}

pub fn cmovcc(cpu: &mut Cpu, d: &DInsn) -> R {
    // The source is read (and may fault) whether or not the move happens.
    let v = read_op(cpu, d, 1, d.size)?;
    if cpu.cond(cc(d)) {
        write_op(cpu, d, 0, d.size, v)?;
    }
    Ok(())
}

pub fn clc(cpu: &mut Cpu, _: &DInsn) -> R {
    cpu.set_flag(flags::CF, false);
    Ok(())
}

pub fn stc(cpu: &mut Cpu, _: &DInsn) -> R {
    cpu.set_flag(flags::CF, true);
    Ok(())
}

pub fn cmc(cpu: &mut Cpu, _: &DInsn) -> R {
    let c = cpu.cf();
    cpu.set_flag(flags::CF, !c);
    Ok(())
}

pub fn cld(cpu: &mut Cpu, _: &DInsn) -> R {
    cpu.eflags &= !flags::DF;
    Ok(())
}

pub fn std_(cpu: &mut Cpu, _: &DInsn) -> R {
    cpu.eflags |= flags::DF;
    Ok(())
}
