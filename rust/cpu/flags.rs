//! Lazy arithmetic flags.
//!
// H:300 Most instructions set the six arithmetic flags and almost nothing
// reads them: an `add` is usually followed by another instruction that sets
// them again, and a conditional jump needs one or two of them.  So instead of
// computing CF, PF, AF, ZF, SF and OF after every instruction we remember
// *how* they were produced (the operation, its size, its operands and result)
// and compute a flag only when somebody asks.  This is the classic trick of
// fast interpreters (Bochs calls it "lazy flags"); it turns six flag
// computations per instruction into one small store.

pub const CF: u32 = 1 << 0;
pub const PF: u32 = 1 << 2;
pub const AF: u32 = 1 << 4;
pub const ZF: u32 = 1 << 6;
pub const SF: u32 = 1 << 7;
pub const TF: u32 = 1 << 8;
pub const IF: u32 = 1 << 9;
pub const DF: u32 = 1 << 10;
pub const OF: u32 = 1 << 11;
pub const IOPL: u32 = 3 << 12;
pub const NT: u32 = 1 << 14;
pub const RF: u32 = 1 << 16;
pub const VM: u32 = 1 << 17;
pub const AC: u32 = 1 << 18;
pub const ID: u32 = 1 << 21;
pub const ARITH: u32 = CF | PF | AF | ZF | SF | OF;

/// How the current arithmetic flags were produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FlagOp {
    /// The flags are stored literally in `Cpu::eflags`.
    Eager,
    Add,
    Adc,
    Sub,
    Sbb,
    Logic,
    /// inc/dec keep CF: `carry` holds the old one.
    Inc,
    Dec,
    /// Shifts by a non-zero count.  Their flags come from the result and
    /// CF alone, so, as for logic operations, no operands are kept: a right
    /// shift by exactly one (whose OF is the original sign bit, still there
    /// one place lower in the result) is told apart as `Shr1`.
    Shl,
    Shr,
    Shr1,
    Sar,
}

/// The flags of the last flag-setting operation.
///
/// CF is the exception to laziness: it is computed when the operation runs
/// and kept in `cf` at all times (also when `op` is `Eager`), because it is
/// cheap to compute then, and because inc/dec keep it: with CF stored, they
/// need not work out the previous operation's carry.
#[derive(Clone, Copy, Debug)]
pub struct Lazy {
    pub op: FlagOp,
    /// Operand size in bits: 8, 16 or 32.
    pub bits: u8,
    /// The carry flag, always current.
    pub cf: bool,
    /// The operands; not kept (stale) for logic operations and inc/dec.
    pub a: u32,
    pub b: u32,
    pub res: u32,
}

impl Lazy {
    /// `a` if `first`, else `b`, field by field with conditional moves
    /// rather than a branch (H:287).
    #[inline(always)]
    pub fn select(first: bool, a: Lazy, b: Lazy) -> Lazy {
        use std::hint::select_unpredictable as pick;
        Lazy { op: pick(first, a.op, b.op), bits: pick(first, a.bits, b.bits), cf: pick(first, a.cf, b.cf), a: pick(first, a.a, b.a), b: pick(first, a.b, b.b), res: pick(first, a.res, b.res) }
    }
}

impl Default for Lazy {
    fn default() -> Self {
        Lazy { op: FlagOp::Eager, bits: 32, cf: false, a: 0, b: 0, res: 0 }
    }
}

#[inline(always)]
pub fn mask(bits: u8) -> u32 {
    if bits >= 32 {
        u32::MAX
    } else {
        (1u32 << bits) - 1
    }
}

#[inline(always)]
fn sign(v: u32, bits: u8) -> bool {
    (v >> (bits - 1)) & 1 != 0
}

#[inline(always)]
pub fn parity(v: u32) -> bool {
    (v as u8).count_ones().is_multiple_of(2)
}

impl Lazy {
    /// H:303 Record an operation: this is all a flag-setting instruction
    /// does about flags.  The inputs and the result are stored, and only CF
    /// is worked out now (see `Lazy`).  For adc/sbb the carry-in is the
    /// current `cf`; inc/dec leave `cf` alone.  The readers are `Cpu::cond`
    /// (H:305) and `Cpu::get_eflags` (H:307).
    #[inline(always)]
    pub fn set(&mut self, op: FlagOp, bits: u8, a: u32, b: u32, res: u32) {
        let m = mask(bits);
        let res = res & m;
        self.cf = match op {
            FlagOp::Eager | FlagOp::Inc | FlagOp::Dec => self.cf,
            FlagOp::Add => res < (a & m),
            FlagOp::Adc => res < (a & m) || (self.cf && res == (a & m)),
            FlagOp::Sub => (a & m) < (b & m),
            FlagOp::Sbb => (a & m) < (b & m) || (self.cf && (a & m) == (b & m)),
            FlagOp::Logic => false,
            FlagOp::Shl => b <= bits as u32 && (a >> (bits as u32 - b)) & 1 != 0,
            FlagOp::Shr | FlagOp::Shr1 => b <= bits as u32 && (a >> (b - 1)) & 1 != 0,
            FlagOp::Sar => {
                let c = b.min(bits as u32);
                ((sign_extend(a, bits) as i32 >> (c - 1).min(31)) & 1) != 0
            }
        };
        self.op = if op == FlagOp::Shr && b == 1 { FlagOp::Shr1 } else { op };
        self.bits = bits;
        // The flags of logic operations, inc/dec and shifts depend on the
        // result alone (and CF), so their operands are not kept: two stores
        // fewer for the commonest flag-setters.
        if !matches!(op, FlagOp::Logic | FlagOp::Inc | FlagOp::Dec | FlagOp::Shl | FlagOp::Shr | FlagOp::Shr1 | FlagOp::Sar) {
            self.a = a;
            self.b = b;
        }
        self.res = res;
    }

    #[inline(always)]
    pub fn cf(&self) -> bool {
        self.cf
    }

    #[inline(always)]
    pub fn zf(&self) -> bool {
        self.res == 0
    }

    #[inline(always)]
    pub fn sf(&self) -> bool {
        sign(self.res, self.bits)
    }

    #[inline(always)]
    pub fn pf(&self) -> bool {
        parity(self.res)
    }

    #[inline(always)]
    pub fn af(&self) -> bool {
        match self.op {
            FlagOp::Logic | FlagOp::Shl | FlagOp::Shr | FlagOp::Shr1 | FlagOp::Sar => false,
            FlagOp::Inc => (self.res & 0xf) == 0,
            FlagOp::Dec => (self.res & 0xf) == 0xf,
            _ => ((self.a ^ self.b ^ self.res) & 0x10) != 0,
        }
    }

    #[inline(always)]
    pub fn of(&self) -> bool {
        let bits = self.bits;
        match self.op {
            FlagOp::Eager => unreachable!(),
            FlagOp::Add | FlagOp::Adc => sign((self.a ^ self.res) & (self.b ^ self.res), bits),
            FlagOp::Sub | FlagOp::Sbb => sign((self.a ^ self.b) & (self.a ^ self.res), bits),
            FlagOp::Logic => false,
            FlagOp::Inc => self.res == (1u32 << (bits - 1)),
            FlagOp::Dec => self.res == (1u32 << (bits - 1)) - 1,
            // For counts above one the SDM leaves OF undefined; silicon
            // computes it as for a count of one on the last step, which is what
            // these formulas give.
            FlagOp::Shl => sign(self.res, bits) ^ self.cf(),
            // A count of one: OF is the original operand's sign bit, which
            // is now the result's second-highest bit.  For larger counts
            // real CPUs compute it from the last single-bit step, which
            // shifted a zero in.
            FlagOp::Shr1 => (self.res >> (bits - 2)) & 1 != 0,
            FlagOp::Shr => false,
            FlagOp::Sar => false,
        }
    }

    /// Condition code `cc` of these (never eager) flags; `Cpu::cond` is the
    /// general version.  Used on a copy in registers by the fused handlers,
    /// where it folds down to a comparison or two.
    #[inline(always)]
    pub fn cond(&self, cc: u8) -> bool {
        cond(self, cc)
    }

    /// All six flags as EFLAGS bits.
    pub fn materialize(&self) -> u32 {
        let mut f = 0;
        if self.cf() {
            f |= CF;
        }
        if self.pf() {
            f |= PF;
        }
        if self.af() {
            f |= AF;
        }
        if self.zf() {
            f |= ZF;
        }
        if self.sf() {
            f |= SF;
        }
        if self.of() {
            f |= OF;
        }
        f
    }
}

/// Something that can say what the five flags conditions test are: the
/// processor (whose flags may be eager) or a `Lazy` record alone.
pub trait Flags {
    fn of(&self) -> bool;
    fn cf(&self) -> bool;
    fn zf(&self) -> bool;
    fn sf(&self) -> bool;
    fn pf(&self) -> bool;
}

impl Flags for Lazy {
    #[inline(always)]
    fn of(&self) -> bool {
        Lazy::of(self)
    }
    #[inline(always)]
    fn cf(&self) -> bool {
        Lazy::cf(self)
    }
    #[inline(always)]
    fn zf(&self) -> bool {
        Lazy::zf(self)
    }
    #[inline(always)]
    fn sf(&self) -> bool {
        Lazy::sf(self)
    }
    #[inline(always)]
    fn pf(&self) -> bool {
        Lazy::pf(self)
    }
}

/// H:306 Condition code `cc` (the low nibble of Jcc/SETcc/CMOVcc) from
/// whatever holds the flags.
#[inline(always)]
pub fn cond<F: Flags>(f: &F, cc: u8) -> bool {
    let r = match cc >> 1 {
        0 => f.of(),
        1 => f.cf(),
        2 => f.zf(),
        3 => f.cf() || f.zf(),
        4 => f.sf(),
        5 => f.pf(),
        6 => f.sf() != f.of(),
        _ => f.zf() || (f.sf() != f.of()),
    };
    r ^ (cc & 1 != 0)
}

#[inline(always)]
pub fn sign_extend(v: u32, bits: u8) -> u32 {
    match bits {
        8 => v as u8 as i8 as i32 as u32,
        16 => v as u16 as i16 as i32 as u32,
        _ => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(op: FlagOp, bits: u8, a: u32, b: u32, res: u32, carry: bool) -> u32 {
        let mut l = Lazy { cf: carry, ..Lazy::default() };
        l.set(op, bits, a, b, res);
        l.materialize()
    }

    #[test]
    fn add_flags() {
        // 0x7f + 1 = 0x80: overflow, sign, auxiliary carry, no carry.
        let f = flags(FlagOp::Add, 8, 0x7f, 1, 0x80, false);
        assert_eq!(f & (CF | OF | SF | ZF | AF), OF | SF | AF);
        // 0xff + 1 = 0: carry and zero.
        let f = flags(FlagOp::Add, 8, 0xff, 1, 0x100, false);
        assert_eq!(f & (CF | ZF | OF), CF | ZF);
    }

    #[test]
    fn sub_flags() {
        let f = flags(FlagOp::Sub, 32, 1, 2, 1u32.wrapping_sub(2), false);
        assert_eq!(f & (CF | SF | ZF | OF), CF | SF);
        let f = flags(FlagOp::Sub, 32, 0x8000_0000, 1, 0x7fff_ffff, false);
        assert_eq!(f & (CF | OF), OF);
    }

    #[test]
    fn sbb_with_borrow_of_all_ones() {
        // 5 - 0xff - 1 in 8 bits borrows.
        let f = flags(FlagOp::Sbb, 8, 5, 0xff, 5u32.wrapping_sub(0x100), true);
        assert_ne!(f & CF, 0);
    }

    /// The flags the host processor itself gives a 32-bit shift: silicon is
    /// the oracle.
    #[cfg(target_arch = "x86_64")]
    fn silicon_shift(kind: u8, a: u32, c: u8) -> (u32, u32) {
        let mut v = a;
        let f: u64;
        // SAFETY: the shifts work on registers only, and pushfq/pop leave
        // the stack as they found it.
        unsafe {
            match kind {
                0 => std::arch::asm!("shl {v:e}, cl", "pushfq", "pop {f}", v = inout(reg) v, f = out(reg) f, in("cl") c),
                1 => std::arch::asm!("shr {v:e}, cl", "pushfq", "pop {f}", v = inout(reg) v, f = out(reg) f, in("cl") c),
                _ => std::arch::asm!("sar {v:e}, cl", "pushfq", "pop {f}", v = inout(reg) v, f = out(reg) f, in("cl") c),
            }
        }
        (v, f as u32)
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn shift_flags_match_silicon() {
        let values = [0u32, 1, 2, 3, 0x4000_0000, 0x7fff_ffff, 0x8000_0000, 0x8000_0001, 0xc000_0000, 0xffff_ffff, 0x1234_5678, 0xedb8_8320];
        for kind in 0..3u8 {
            for &a in &values {
                for c in [1u8, 2, 5, 31] {
                    let (res, want) = silicon_shift(kind, a, c);
                    let (got_res, op) = crate::cpu::exec::fast::shift_for_test(kind, a, c as u32);
                    assert_eq!(got_res, res, "kind {kind} a {a:#x} c {c}");
                    // OF is defined for a count of one only; AF never.
                    let defined = CF | PF | ZF | SF | if c == 1 { OF } else { 0 };
                    let got = flags(op, 32, a, c as u32, res, false);
                    assert_eq!(got & defined, want & defined, "kind {kind} a {a:#x} c {c}");
                    if kind == 1 && c == 1 {
                        // The fused handler's own record for a shift by one.
                        let fused = flags(FlagOp::Shr1, 32, a, 1, res, false);
                        assert_eq!(fused & defined, want & defined, "shr1 a {a:#x}");
                    }
                }
            }
        }
    }
}
