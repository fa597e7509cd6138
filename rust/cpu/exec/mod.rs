//! Instruction semantics, grouped by family.
//!
// H:230 Each decoded instruction gets one handler, picked here by mnemonic
// when the block is decoded.  Handlers are plain functions
// `fn(&mut Cpu, &DInsn) -> Result<(), Stop>`: the hot loop calls through the
// pointer without any further dispatch.  Handlers read every operand and
// check every memory access they need *before* they change state, so that a
// fault leaves the processor exactly as it was and the instruction can be
// restarted (this is what makes demand paging work).

use iced_x86::{Instruction, Mnemonic, OpKind, Register};

use super::decode::{DInsn, MemOp, Pair, NO_REG};
use super::state::{Cpu, Fault, SegReg, Stop};

/// Both handlers for `f`, a handler that works on registers alone (H:232):
/// it never reads `next_eip` and, touching no memory, never ends a block.
/// It changes at most the register `r0` and the flags, so it also gets a
/// predicated twin (H:287) that undoes its work if `Cpu::pred_skip` says
/// the branch in front of it was taken.
macro_rules! regs {
    ($f:expr) => {{
        fn fast(cpu: &mut $crate::cpu::state::Cpu, d: &$crate::cpu::decode::DInsn) -> $crate::cpu::decode::Next {
            let r = $f(cpu, d);
            $crate::cpu::run::after_regs(d, r)
        }
        fn pred(cpu: &mut $crate::cpu::state::Cpu, d: &$crate::cpu::decode::DInsn) -> $crate::cpu::decode::Next {
            let r0 = d.rd as usize & 7;
            let (reg, lazy) = (cpu.regs[r0], cpu.lazy);
            let r = $f(cpu, d);
            $crate::cpu::run::after_pred(cpu, d, r, reg, lazy)
        }
        $crate::cpu::decode::Pair { one: $f, fast, pred: Some(pred) }
    }};
}

/// Both handlers for `f`, a handler that may read or change `next_eip`
/// (H:232): control transfers.
macro_rules! control {
    ($f:expr) => {{
        fn fast(cpu: &mut $crate::cpu::state::Cpu, d: &$crate::cpu::decode::DInsn) -> $crate::cpu::decode::Next {
            $crate::cpu::run::before_control(cpu, d);
            let r = $f(cpu, d);
            $crate::cpu::run::after_control(cpu, d, r)
        }
        $crate::cpu::decode::Pair { one: $f, fast, pred: None }
    }};
}

pub mod alu;
pub mod control;
pub mod data;
pub mod fast;
pub mod fuse;
pub mod string;
pub mod system;

pub type R = Result<(), Stop>;

/// Handler for anything we do not implement: #UD, like a processor that
/// lacks the instruction.
pub fn undefined(_: &mut Cpu, _: &DInsn) -> R {
    Err(Stop::fault(Fault::UD))
}

/// A floating-point or vector instruction without a handler: #NM while the
/// guest's TS flag is set (that check comes before everything else on real
/// hardware), else #UD.
pub fn fpu_undefined(cpu: &mut Cpu, _: &DInsn) -> R {
    Err(Stop::fault(if cpu.ts { Fault::NM } else { Fault::UD }))
}

/// Whether the instruction belongs to the x87, MMX or SSE units (and so
/// honours CR0.TS).
fn is_fpu_class(i: &Instruction) -> bool {
    use iced_x86::CpuidFeature as F;
    i.cpuid_features().iter().any(|f| matches!(f, F::FPU | F::FPU287 | F::FPU387 | F::MMX | F::SSE | F::SSE2 | F::SSE3 | F::SSSE3 | F::SSE4_1 | F::SSE4_2 | F::FXSR))
        || i.mnemonic() == Mnemonic::Wait
}

const AL: u32 = Register::AL as u32;
const AH: u32 = Register::AH as u32;
const BH: u32 = Register::BH as u32;
const AX: u32 = Register::AX as u32;
const DI: u32 = Register::DI as u32;
const EAX: u32 = Register::EAX as u32;
const EDI: u32 = Register::EDI as u32;
const ES: u32 = Register::ES as u32;
const GS: u32 = Register::GS as u32;

/// Read a general-purpose or segment register by its decoder name.
#[inline(always)]
pub fn get_reg(cpu: &Cpu, r: Register) -> u32 {
    let v = r as u32;
    if (EAX..=EDI).contains(&v) {
        cpu.regs[(v - EAX) as usize]
    } else if (AX..=DI).contains(&v) {
        cpu.regs[(v - AX) as usize] & 0xffff
    } else if (AL..AH).contains(&v) {
        cpu.regs[(v - AL) as usize] & 0xff
    } else if (AH..=BH).contains(&v) {
        (cpu.regs[(v - AH) as usize] >> 8) & 0xff
    } else if (ES..=GS).contains(&v) {
        cpu.segs[(v - ES) as usize].selector as u32
    } else {
        0
    }
}

/// Write a general-purpose register; 8- and 16-bit writes merge.
#[inline(always)]
pub fn set_reg(cpu: &mut Cpu, r: Register, val: u32) {
    let v = r as u32;
    if (EAX..=EDI).contains(&v) {
        cpu.regs[(v - EAX) as usize] = val;
    } else if (AX..=DI).contains(&v) {
        let x = &mut cpu.regs[(v - AX) as usize];
        *x = (*x & 0xffff_0000) | (val & 0xffff);
    } else if (AL..AH).contains(&v) {
        let x = &mut cpu.regs[(v - AL) as usize];
        *x = (*x & 0xffff_ff00) | (val & 0xff);
    } else if (AH..=BH).contains(&v) {
        let x = &mut cpu.regs[(v - AH) as usize];
        *x = (*x & 0xffff_00ff) | ((val & 0xff) << 8);
    }
}

pub fn seg_of(r: Register) -> SegReg {
    match r {
        Register::ES => SegReg::Es,
        Register::CS => SegReg::Cs,
        Register::SS => SegReg::Ss,
        Register::FS => SegReg::Fs,
        Register::GS => SegReg::Gs,
        _ => SegReg::Ds,
    }
}

/// The effective address (offset within the segment) of the memory operand.
#[inline(always)]
pub fn ea(cpu: &Cpu, d: &DInsn) -> u32 {
    let i = &d.i;
    let mut a = i.memory_displacement32();
    let base = i.memory_base();
    if base != Register::None {
        a = a.wrapping_add(get_reg(cpu, base));
    }
    let index = i.memory_index();
    if index != Register::None {
        a = a.wrapping_add(get_reg(cpu, index) << i.memory_index_scale().trailing_zeros());
    }
    if d.addr16 {
        a & 0xffff
    } else {
        a
    }
}

/// The linear address of the memory operand.
#[inline(always)]
pub fn mem_lin(cpu: &Cpu, d: &DInsn) -> u32 {
    cpu.lin(seg_of(d.i.memory_segment()), ea(cpu, d))
}

/// Read operand `n` (register, memory or immediate), zero-extended.
#[inline(always)]
pub fn read_op(cpu: &mut Cpu, d: &DInsn, n: u32, size: u8) -> Result<u32, Fault> {
    let i = &d.i;
    match i.op_kind(n) {
        OpKind::Register => Ok(get_reg(cpu, i.op_register(n))),
        OpKind::Memory => {
            let lin = mem_lin(cpu, d);
            cpu.read_sized(lin, size)
        }
        OpKind::Immediate8 => Ok(i.immediate8() as u32),
        OpKind::Immediate8_2nd => Ok(i.immediate8_2nd() as u32),
        OpKind::Immediate16 => Ok(i.immediate16() as u32),
        OpKind::Immediate32 => Ok(i.immediate32()),
        OpKind::Immediate8to16 => Ok(i.immediate8to16() as u16 as u32),
        OpKind::Immediate8to32 => Ok(i.immediate8to32() as u32),
        _ => Ok(0),
    }
}

/// Write operand `n` (register or memory).
#[inline(always)]
pub fn write_op(cpu: &mut Cpu, d: &DInsn, n: u32, size: u8, v: u32) -> Result<(), Fault> {
    let i = &d.i;
    match i.op_kind(n) {
        OpKind::Register => {
            set_reg(cpu, i.op_register(n), v);
            Ok(())
        }
        _ => {
            let lin = mem_lin(cpu, d);
            cpu.write_sized(lin, size, v)
        }
    }
}

/// Size in bytes of operand `n`.
pub fn op_size(i: &Instruction, n: u32) -> u8 {
    match i.op_kind(n) {
        OpKind::Register => i.op_register(n).size() as u8,
        OpKind::Memory => i.memory_size().size() as u8,
        OpKind::Immediate8 | OpKind::Immediate8_2nd => 1,
        OpKind::Immediate16 | OpKind::Immediate8to16 => 2,
        _ => 4,
    }
}

/// H:240 Choose the handler for a freshly decoded instruction.
pub fn make(i: &Instruction) -> DInsn {
    let size = if i.op_count() > 0 { op_size(i, 0) } else { 4 };
    let addr16 = {
        let b = i.memory_base() as u32;
        let x = i.memory_index() as u32;
        (AX..=DI).contains(&b) || (AX..=DI).contains(&x) || (i.op_kind(0) == OpKind::Memory || i.op_count() > 1 && i.op_kind(1) == OpKind::Memory) && i.memory_displ_size() == 2
    };
    let rel = if matches!(i.op0_kind(), OpKind::NearBranch32 | OpKind::NearBranch16) {
        i.near_branch32().wrapping_sub(i.next_ip32())
    } else {
        0
    };
    let mut d = DInsn { h: super::run::generic, h1: undefined, count: 1, fuse: 0, rd: 0, r0: NO_REG, r1: NO_REG, imm: 0, m: MemOp::default(), i: *i, len: i.len() as u8, end: i.len() as i16, cum: 0, toff: 0, tdelta: super::decode::LEAVE_DELTA, hp: None, last: false, size, addr16, rel, chain: std::cell::Cell::new(super::decode::NO_CHAIN) };
    let pair = if i.is_invalid() || addr16 || i.has_lock_prefix() { None } else { fast::specialize(i, &mut d) };
    match pair {
        Some(p) => {
            d.h = p.fast;
            d.h1 = p.one;
            d.hp = p.pred;
        }
        None => {
            let p = pick(i);
            d.h = p.fast;
            d.h1 = p.one;
        }
    }
    d
}

/// A lock prefix is only allowed on the read-modify-write instructions, and
/// only with a memory destination; anything else is #UD.
fn lock_ok(i: &Instruction) -> bool {
    use Mnemonic as M;
    i.op_count() > 0
        && i.op0_kind() == OpKind::Memory
        && matches!(
            i.mnemonic(),
            M::Add | M::Adc | M::And | M::Btc | M::Btr | M::Bts | M::Cmpxchg | M::Cmpxchg8b | M::Dec | M::Inc | M::Neg | M::Not | M::Or | M::Sbb | M::Sub | M::Xor | M::Xadd | M::Xchg
        )
}

fn pick(i: &Instruction) -> Pair {
    use Mnemonic as M;
    if i.is_invalid() || (i.has_lock_prefix() && !lock_ok(i)) {
        return control!(undefined);
    }
    match i.mnemonic() {
        M::Add => control!(alu::add),
        M::Or => control!(alu::or),
        M::Adc => control!(alu::adc),
        M::Sbb => control!(alu::sbb),
        M::And => control!(alu::and),
        M::Sub => control!(alu::sub),
        M::Xor => control!(alu::xor),
        M::Cmp => control!(alu::cmp),
        M::Test => control!(alu::test),
        M::Inc => control!(alu::inc),
        M::Dec => control!(alu::dec),
        M::Neg => control!(alu::neg),
        M::Not => control!(alu::not),
        M::Shl | M::Sal => control!(alu::shl),
        M::Shr => control!(alu::shr),
        M::Sar => control!(alu::sar),
        M::Rol => control!(alu::rol),
        M::Ror => control!(alu::ror),
        M::Rcl => control!(alu::rcl),
        M::Rcr => control!(alu::rcr),
        M::Shld => control!(alu::shld),
        M::Shrd => control!(alu::shrd),
        M::Mul => control!(alu::mul),
        M::Imul => control!(alu::imul),
        M::Div => control!(alu::div),
        M::Idiv => control!(alu::idiv),
        M::Bt => control!(alu::bt),
        M::Bts => control!(alu::bts),
        M::Btr => control!(alu::btr),
        M::Btc => control!(alu::btc),
        M::Bsf => control!(alu::bsf),
        M::Bsr => control!(alu::bsr),
        M::Daa => control!(alu::daa),
        M::Das => control!(alu::das),
        M::Aaa => control!(alu::aaa),
        M::Aas => control!(alu::aas),
        M::Aam => control!(alu::aam),
        M::Aad => control!(alu::aad),
        M::Mov => match (i.op0_kind(), i.op1_kind()) {
            (OpKind::Register, _) if i.op0_register().is_segment_register() => control!(system::mov_to_sreg),
            (OpKind::Register, OpKind::Register) if i.op0_register().is_cr() || i.op0_register().is_dr() || i.op1_register().is_cr() || i.op1_register().is_dr() || i.op0_register().is_tr() || i.op1_register().is_tr() => control!(system::privileged),
            _ => control!(data::mov),
        },
        M::Movzx => control!(data::movzx),
        M::Movsx => control!(data::movsx),
        M::Lea => control!(data::lea),
        M::Xchg => control!(data::xchg),
        M::Cmpxchg => control!(data::cmpxchg),
        M::Cmpxchg8b => control!(data::cmpxchg8b),
        M::Xadd => control!(data::xadd),
        M::Bswap => control!(data::bswap),
        M::Push => control!(data::push),
        M::Pop => control!(data::pop),
        M::Pushad => control!(data::pushad),
        M::Pusha => control!(data::pusha),
        M::Popad => control!(data::popad),
        M::Popa => control!(data::popa),
        M::Pushfd => control!(data::pushfd),
        M::Pushf => control!(data::pushf),
        M::Popfd => control!(data::popfd),
        M::Popf => control!(data::popf),
        M::Lahf => control!(data::lahf),
        M::Sahf => control!(data::sahf),
        M::Cbw => control!(data::cbw),
        M::Cwde => control!(data::cwde),
        M::Cwd => control!(data::cwd),
        M::Cdq => control!(data::cdq),
        M::Xlatb => control!(data::xlat),
        M::Salc => control!(data::salc),
        M::Seto | M::Setno | M::Setb | M::Setae | M::Sete | M::Setne | M::Setbe | M::Seta | M::Sets | M::Setns | M::Setp | M::Setnp | M::Setl | M::Setge | M::Setle | M::Setg => control!(data::setcc),
        M::Cmovo | M::Cmovno | M::Cmovb | M::Cmovae | M::Cmove | M::Cmovne | M::Cmovbe | M::Cmova | M::Cmovs | M::Cmovns | M::Cmovp | M::Cmovnp | M::Cmovl | M::Cmovge | M::Cmovle | M::Cmovg => control!(data::cmovcc),
        M::Lds | M::Les | M::Lfs | M::Lgs | M::Lss => control!(system::load_far_pointer),
        M::Jo | M::Jno | M::Jb | M::Jae | M::Je | M::Jne | M::Jbe | M::Ja | M::Js | M::Jns | M::Jp | M::Jnp | M::Jl | M::Jge | M::Jle | M::Jg => control!(control::jcc),
        M::Jmp => match i.op0_kind() {
            OpKind::NearBranch32 | OpKind::NearBranch16 => control!(control::jmp_rel),
            OpKind::FarBranch16 | OpKind::FarBranch32 => control!(control::jmp_far),
            OpKind::Memory if matches!(i.memory_size(), iced_x86::MemorySize::SegPtr32 | iced_x86::MemorySize::SegPtr16) => control!(control::jmp_far),
            _ => control!(control::jmp_ind),
        },
        M::Call => match i.op0_kind() {
            OpKind::NearBranch32 | OpKind::NearBranch16 => control!(control::call_rel),
            OpKind::FarBranch16 | OpKind::FarBranch32 => control!(control::call_far),
            OpKind::Memory if matches!(i.memory_size(), iced_x86::MemorySize::SegPtr32 | iced_x86::MemorySize::SegPtr16) => control!(control::call_far),
            _ => control!(control::call_ind),
        },
        M::Ret => control!(control::ret),
        M::Retf => control!(control::retf),
        M::Loop => control!(control::loop_),
        M::Loope => control!(control::loope),
        M::Loopne => control!(control::loopne),
        M::Jecxz | M::Jcxz => control!(control::jecxz),
        M::Int => control!(control::int),
        M::Int3 => control!(control::int3),
        M::Into => control!(control::into),
        M::Int1 => control!(control::int1),
        M::Iretd | M::Iret => control!(control::iret),
        M::Enter => control!(control::enter),
        M::Leave => control!(control::leave),
        M::Hlt => control!(control::hlt),
        M::Nop | M::Pause | M::Lfence | M::Sfence | M::Mfence | M::Prefetchnta | M::Prefetcht0 | M::Prefetcht1 | M::Prefetcht2 | M::Prefetchw => control!(data::nop),
        M::Clc => control!(data::clc),
        M::Stc => control!(data::stc),
        M::Cmc => control!(data::cmc),
        M::Cld => control!(data::cld),
        M::Std => control!(data::std_),
        M::Cli | M::Sti => control!(system::cli_sti),
        M::Movsb | M::Movsw => control!(string::movs),
        M::Movsd if i.op_count() == 2 && matches!(i.op0_kind(), OpKind::MemoryESEDI | OpKind::MemoryESDI) => control!(string::movs),
        M::Stosb | M::Stosw | M::Stosd => control!(string::stos),
        M::Lodsb | M::Lodsw | M::Lodsd => control!(string::lods),
        M::Cmpsb | M::Cmpsw | M::Cmpsd if i.op_count() == 2 && i.op0_kind() != OpKind::Register => control!(string::cmps),
        M::Scasb | M::Scasw | M::Scasd => control!(string::scas),
        M::Insb | M::Insw | M::Insd | M::Outsb | M::Outsw | M::Outsd | M::In | M::Out => control!(system::io),
        M::Cpuid => control!(system::cpuid),
        M::Rdtsc => control!(system::rdtsc),
        M::Ud2 | M::Ud0 | M::Ud1 => control!(undefined),
        M::Lgdt | M::Lidt | M::Lldt | M::Ltr | M::Lmsw | M::Clts | M::Invd | M::Wbinvd | M::Invlpg | M::Rdmsr | M::Wrmsr | M::Rdpmc | M::Vmcall | M::Sysenter | M::Sysexit => control!(system::privileged),
        M::Sgdt | M::Sidt | M::Sldt | M::Str | M::Smsw => control!(system::store_descriptor_regs),
        // The floating-point and vector handlers, many and rarely hot in a
        // kernel, run through `run::generic` rather than a wrapper each.
        _ => match super::fpu::pick(i) {
            Some(h) => Pair { one: h, fast: super::run::generic, pred: None },
            None if is_fpu_class(i) => control!(fpu_undefined),
            None => control!(undefined),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_views_merge() {
        let mut cpu = Cpu::new(super::super::mem::Mmu::Bare(Default::default()));
        cpu.regs[0] = 0x1122_3344;
        assert_eq!(get_reg(&cpu, Register::AH), 0x33);
        assert_eq!(get_reg(&cpu, Register::AX), 0x3344);
        set_reg(&mut cpu, Register::AH, 0xaa);
        set_reg(&mut cpu, Register::AL, 0xbb);
        assert_eq!(cpu.regs[0], 0x1122_aabb);
        set_reg(&mut cpu, Register::BX, 0xffff_1234);
        assert_eq!(cpu.regs[3], 0x1234);
    }
}
