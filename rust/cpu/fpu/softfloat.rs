//! Software floating point: one rounding core for single, double and
//! double-extended precision.
//
// H:710 Every floating-point result the guest sees is computed here, in
// integer arithmetic, rather than by the host's FPU.  Two reasons.  First,
// the x87 computes in 80-bit extended precision, which Rust has no type for,
// and gcc's 387 code depends on those extra bits.  Second, the guest chooses
// the rounding mode, flush-to-zero and denormals-are-zero, and it reads back
// the sticky exception flags; asking the host for all of that would mean
// changing the host's MXCSR under the compiler's feet.
//
// A value is unpacked into a sign, an unbiased exponent and a 64-bit
// significand with its leading one at bit 63, whatever format it came from.
// Operations produce an exact (or exactly-sticky) wide significand and hand
// it to `round`, which knows the target format's precision and exponent
// range, the rounding mode, and how the x86 detects underflow (tininess
// *after* rounding).  Packing is then an exact shift.

/// Exception flags, in the bit positions the x87 status word and MXCSR share.
pub const IE: u32 = 0x01;
pub const DE: u32 = 0x02;
pub const ZE: u32 = 0x04;
pub const OE: u32 = 0x08;
pub const UE: u32 = 0x10;
pub const PE: u32 = 0x20;
/// Not an exception: the result was rounded away from zero (x87 C1).
pub const UP: u32 = 0x200;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Zero,
    Finite,
    Inf,
    QNaN,
    SNaN,
    /// An x87 encoding the 387 and later reject (unnormal, pseudo-NaN, ...).
    Bad,
}

/// An unpacked value.  Finite: sig * 2^(exp-63) with bit 63 of `sig` set.
/// NaN: `sig` holds the payload with the integer bit at 63, quiet bit at 62.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct F {
    pub kind: Kind,
    pub sign: bool,
    pub exp: i32,
    pub sig: u64,
}

impl F {
    pub const fn zero(sign: bool) -> F {
        F { kind: Kind::Zero, sign, exp: 0, sig: 0 }
    }
    pub const fn inf(sign: bool) -> F {
        F { kind: Kind::Inf, sign, exp: 0, sig: 1 << 63 }
    }
    /// The "real indefinite" QNaN every masked invalid operation returns.
    pub const INDEFINITE: F = F { kind: Kind::QNaN, sign: true, exp: 0, sig: 0xC000_0000_0000_0000 };
    pub const ONE: F = F { kind: Kind::Finite, sign: false, exp: 0, sig: 1 << 63 };

    pub fn is_nan(&self) -> bool {
        matches!(self.kind, Kind::QNaN | Kind::SNaN)
    }
    /// NaN or unsupported: the operand makes the result a NaN before any
    /// denormal check happens.
    pub fn is_nanlike(&self) -> bool {
        matches!(self.kind, Kind::QNaN | Kind::SNaN | Kind::Bad)
    }
    pub fn quiet(mut self) -> F {
        if self.kind == Kind::SNaN {
            self.kind = Kind::QNaN;
            self.sig |= 1 << 62;
        }
        self
    }
    pub fn negate(mut self) -> F {
        self.sign = !self.sign;
        self
    }
}

/// A destination format: significand bits (including the leading one) and
/// the normal exponent range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fmt {
    pub prec: u32,
    pub emin: i32,
    pub emax: i32,
}

pub const F32: Fmt = Fmt { prec: 24, emin: -126, emax: 127 };
pub const F64: Fmt = Fmt { prec: 53, emin: -1022, emax: 1023 };
pub const F80: Fmt = Fmt { prec: 64, emin: -16382, emax: 16383 };

/// Rounding modes, in the encoding of x87 CW.RC and MXCSR.RC.
pub const RN: u8 = 0;
pub const RD: u8 = 1;
pub const RU: u8 = 2;
pub const RZ: u8 = 3;

/// The rounding environment of one operation, and the flags it raised.
#[derive(Clone, Copy, Debug)]
pub struct Env {
    pub rc: u8,
    /// Flush tiny results to zero (MXCSR.FZ with underflow masked).
    pub ftz: bool,
    /// Treat denormal inputs as zero (MXCSR.DAZ).
    pub daz: bool,
    /// Underflow masked: then UE needs tiny *and* inexact.
    pub ue_masked: bool,
    /// NaN operand selection: x87 (larger significand) or SSE (first operand).
    pub x87: bool,
    pub flags: u32,
}

impl Env {
    pub fn new(rc: u8, x87: bool) -> Env {
        Env { rc, ftz: false, daz: false, ue_masked: true, x87, flags: 0 }
    }
}

/// Drop the low `drop` bits of `sig`, rounding: (kept, inexact, incremented).
#[inline]
fn round_bits(sig: u128, drop: u32, sign: bool, rc: u8) -> (u128, bool, bool) {
    if drop == 0 {
        return (sig, false, false);
    }
    let (kept, rbit, sticky) = if drop > 128 {
        (0, false, sig != 0)
    } else if drop == 128 {
        (0, sig >> 127 != 0, sig << 1 != 0)
    } else {
        (sig >> drop, (sig >> (drop - 1)) & 1 != 0, sig & ((1u128 << (drop - 1)) - 1) != 0)
    };
    let inexact = rbit || sticky;
    let inc = match rc {
        RN => rbit && (sticky || kept & 1 != 0),
        RD => inexact && sign,
        RU => inexact && !sign,
        _ => false,
    };
    (kept + inc as u128, inexact, inc)
}

/// Round sig * 2^(exp-127) to `fmt`.
pub fn round(env: &mut Env, fmt: Fmt, sign: bool, exp: i32, sig: u128) -> F {
    if sig == 0 {
        return F::zero(sign);
    }
    let lz = sig.leading_zeros();
    let sig = sig << lz;
    let exp = exp - lz as i32;
    let mut tiny = false;
    if exp < fmt.emin {
        // Tininess after rounding: would rounding to full precision with an
        // unbounded exponent carry the value up to the smallest normal?
        let (k, _, _) = round_bits(sig, 128 - fmt.prec, sign, env.rc);
        tiny = !(k >> fmt.prec != 0 && exp + 1 >= fmt.emin);
    }
    if tiny && env.ftz && env.ue_masked {
        env.flags |= UE | PE;
        return F::zero(sign);
    }
    let lsb = exp.max(fmt.emin) - (fmt.prec as i32 - 1);
    let drop = (lsb - (exp - 127)) as u32;
    let (kept, inexact, up) = round_bits(sig, drop, sign, env.rc);
    if inexact {
        env.flags |= PE;
        if up {
            env.flags |= UP;
        }
    }
    if tiny && (inexact || !env.ue_masked) {
        env.flags |= UE;
    }
    if kept == 0 {
        return F::zero(sign);
    }
    let bl = 128 - kept.leading_zeros() as i32;
    let rexp = lsb + bl - 1;
    if rexp > fmt.emax {
        env.flags |= OE | PE;
        let to_inf = match env.rc {
            RN => true,
            RD => sign,
            RU => !sign,
            _ => false,
        };
        if to_inf {
            env.flags |= UP;
            return F::inf(sign);
        }
        env.flags &= !UP;
        return F { kind: Kind::Finite, sign, exp: fmt.emax, sig: !0u64 << (64 - fmt.prec) };
    }
    F { kind: Kind::Finite, sign, exp: rexp, sig: ((kept << (128 - bl)) >> 64) as u64 }
}

/// Round an unpacked value (already exact) to a narrower format.
pub fn round_f(env: &mut Env, fmt: Fmt, a: F) -> F {
    match a.kind {
        Kind::Finite => round(env, fmt, a.sign, a.exp + 64, a.sig as u128),
        _ => a,
    }
}

// ---- packing -------------------------------------------------------------

/// Unpack an IEEE binary32/binary64 pattern.  Returns the value and whether
/// it was a denormal (which sets DE unless DAZ turned it into zero).
pub fn unpack_ieee(bits: u64, ebits: u32, fbits: u32, daz: bool) -> (F, bool) {
    let sign = bits >> (ebits + fbits) & 1 != 0;
    let emax = (1u64 << ebits) - 1;
    let e = (bits >> fbits) & emax;
    let frac = bits & ((1u64 << fbits) - 1);
    let bias = (emax >> 1) as i32;
    if e == 0 {
        if frac == 0 {
            return (F::zero(sign), false);
        }
        if daz {
            return (F::zero(sign), false);
        }
        let sh = frac.leading_zeros();
        let exp = 1 - bias - fbits as i32 + 63 - sh as i32;
        return (F { kind: Kind::Finite, sign, exp, sig: frac << sh }, true);
    }
    let sig = 1 << 63 | frac << (63 - fbits);
    if e == emax {
        if frac == 0 {
            return (F::inf(sign), false);
        }
        let kind = if frac >> (fbits - 1) & 1 != 0 { Kind::QNaN } else { Kind::SNaN };
        return (F { kind, sign, exp: 0, sig }, false);
    }
    (F { kind: Kind::Finite, sign, exp: e as i32 - bias, sig }, false)
}

/// Pack a value that `round` produced for this format (exactly representable).
pub fn pack_ieee(a: F, ebits: u32, fbits: u32) -> u64 {
    let s = (a.sign as u64) << (ebits + fbits);
    let emax = (1u64 << ebits) - 1;
    let bias = (emax >> 1) as i32;
    let fmask = (1u64 << fbits) - 1;
    match a.kind {
        Kind::Zero => s,
        Kind::Inf => s | emax << fbits,
        Kind::QNaN | Kind::SNaN | Kind::Bad => {
            let mut f = (a.sig >> (63 - fbits)) & fmask;
            if f == 0 {
                f = 1 << (fbits - 1);
            }
            s | emax << fbits | f
        }
        Kind::Finite => {
            let m = a.sig >> (63 - fbits);
            if a.exp < 1 - bias {
                let sh = (1 - bias - a.exp) as u32;
                s | if sh < 64 { m >> sh } else { 0 }
            } else {
                s | ((a.exp + bias) as u64) << fbits | (m & fmask)
            }
        }
    }
}

pub fn unpack_f32(bits: u32, daz: bool) -> (F, bool) {
    unpack_ieee(bits as u64, 8, 23, daz)
}
pub fn unpack_f64(bits: u64, daz: bool) -> (F, bool) {
    unpack_ieee(bits, 11, 52, daz)
}
pub fn pack_f32(a: F) -> u32 {
    pack_ieee(a, 8, 23) as u32
}
pub fn pack_f64(a: F) -> u64 {
    pack_ieee(a, 11, 52)
}

/// Unpack an x87 register image (significand, sign+exponent).  Returns the
/// value and whether it was a denormal or pseudo-denormal.
pub fn unpack_f80(sig: u64, se: u16) -> (F, bool) {
    let sign = se & 0x8000 != 0;
    let e = (se & 0x7fff) as i32;
    let int = sig >> 63 != 0;
    if e == 0 {
        if sig == 0 {
            return (F::zero(sign), false);
        }
        let lz = sig.leading_zeros();
        return (F { kind: Kind::Finite, sign, exp: -16382 - lz as i32, sig: sig << lz }, true);
    }
    if !int {
        return (F { kind: Kind::Bad, sign, exp: 0, sig }, false);
    }
    if e == 0x7fff {
        if sig << 1 == 0 {
            return (F::inf(sign), false);
        }
        let kind = if sig >> 62 & 1 != 0 { Kind::QNaN } else { Kind::SNaN };
        return (F { kind, sign, exp: 0, sig }, false);
    }
    (F { kind: Kind::Finite, sign, exp: e - 16383, sig }, false)
}

pub fn pack_f80(a: F) -> (u64, u16) {
    let s = (a.sign as u16) << 15;
    match a.kind {
        Kind::Zero => (0, s),
        Kind::Inf => (1 << 63, s | 0x7fff),
        Kind::QNaN | Kind::SNaN => (a.sig | 1 << 63, s | 0x7fff),
        Kind::Bad => (a.sig, s | 0x7fff),
        Kind::Finite => {
            if a.exp < -16382 {
                let sh = (-16382 - a.exp) as u32;
                (if sh < 64 { a.sig >> sh } else { 0 }, s)
            } else {
                (a.sig, s | (a.exp + 16383) as u16)
            }
        }
    }
}

// ---- operations ------------------------------------------------------------

/// Pick the NaN result of a two-operand operation (at least one is a NaN).
pub fn propagate(env: &mut Env, a: F, b: F) -> F {
    if a.kind == Kind::SNaN || b.kind == Kind::SNaN {
        env.flags |= IE;
    }
    let r = if !b.is_nan() {
        a
    } else if !a.is_nan() {
        b
    } else if !env.x87 {
        a
    } else if a.kind != b.kind {
        // One quiet, one signalling: the quiet one wins.
        if a.kind == Kind::QNaN {
            a
        } else {
            b
        }
    } else {
        // Both the same kind: the larger significand, then the positive one.
        match (a.sig << 1).cmp(&(b.sig << 1)) {
            std::cmp::Ordering::Greater => a,
            std::cmp::Ordering::Less => b,
            _ => {
                if !a.sign {
                    a
                } else {
                    b
                }
            }
        }
    };
    r.quiet()
}

/// Invalid operation: flag it and return the default NaN.
pub fn invalid(env: &mut Env) -> F {
    env.flags |= IE;
    F::INDEFINITE
}

/// Special cases shared by all two-operand arithmetic: NaNs and bad encodings.
#[inline]
fn specials2(env: &mut Env, a: F, b: F) -> Option<F> {
    if a.kind == Kind::Bad || b.kind == Kind::Bad {
        return Some(invalid(env));
    }
    if a.is_nan() || b.is_nan() {
        return Some(propagate(env, a, b));
    }
    None
}

pub fn add(env: &mut Env, fmt: Fmt, a: F, b: F, subtract: bool) -> F {
    if let Some(r) = specials2(env, a, b) {
        return r;
    }
    let b = if subtract { b.negate() } else { b };
    match (a.kind, b.kind) {
        (Kind::Inf, Kind::Inf) => {
            return if a.sign == b.sign { a } else { invalid(env) };
        }
        (Kind::Inf, _) => return a,
        (_, Kind::Inf) => return b,
        (Kind::Zero, Kind::Zero) => {
            let sign = if a.sign == b.sign { a.sign } else { env.rc == RD };
            return F::zero(sign);
        }
        (Kind::Zero, _) => return round_f(env, fmt, b),
        (_, Kind::Zero) => return round_f(env, fmt, a),
        _ => {}
    }
    let (a, b) = if a.exp >= b.exp { (a, b) } else { (b, a) };
    let d = (a.exp - b.exp) as u32;
    let x = (a.sig as u128) << 63;
    let mut y = (b.sig as u128) << 63;
    y = if d >= 127 { (y != 0) as u128 } else { (y >> d) | ((y & ((1u128 << d) - 1)) != 0) as u128 };
    if a.sign == b.sign {
        return round(env, fmt, a.sign, a.exp + 1, x + y);
    }
    let (s, sign) = if x >= y { (x - y, a.sign) } else { (y - x, b.sign) };
    if s == 0 {
        return F::zero(env.rc == RD);
    }
    round(env, fmt, sign, a.exp + 1, s)
}

pub fn mul(env: &mut Env, fmt: Fmt, a: F, b: F) -> F {
    if let Some(r) = specials2(env, a, b) {
        return r;
    }
    let sign = a.sign != b.sign;
    match (a.kind, b.kind) {
        (Kind::Inf, Kind::Zero) | (Kind::Zero, Kind::Inf) => invalid(env),
        (Kind::Inf, _) | (_, Kind::Inf) => F::inf(sign),
        (Kind::Zero, _) | (_, Kind::Zero) => F::zero(sign),
        _ => round(env, fmt, sign, a.exp + b.exp + 1, a.sig as u128 * b.sig as u128),
    }
}

pub fn div(env: &mut Env, fmt: Fmt, a: F, b: F) -> F {
    if let Some(r) = specials2(env, a, b) {
        return r;
    }
    let sign = a.sign != b.sign;
    match (a.kind, b.kind) {
        (Kind::Inf, Kind::Inf) | (Kind::Zero, Kind::Zero) => invalid(env),
        (Kind::Inf, _) => F::inf(sign),
        (_, Kind::Inf) => F::zero(sign),
        (Kind::Zero, _) => F::zero(sign),
        (_, Kind::Zero) => {
            env.flags |= ZE;
            F::inf(sign)
        }
        _ => {
            let bs = b.sig as u128;
            let n = (a.sig as u128) << 64;
            let (q1, r1) = (n / bs, n % bs);
            let n2 = r1 << 64;
            let (q2, r2) = (n2 / bs, n2 % bs);
            let q = (q1 << 63) | (q2 >> 1) | ((q2 & 1 != 0 || r2 != 0) as u128);
            round(env, fmt, sign, a.exp - b.exp, q)
        }
    }
}

pub fn sqrt(env: &mut Env, fmt: Fmt, a: F) -> F {
    match a.kind {
        Kind::Bad => return invalid(env),
        Kind::QNaN | Kind::SNaN => return propagate(env, a, a),
        Kind::Zero => return a,
        _ if a.sign => return invalid(env),
        Kind::Inf => return a,
        _ => {}
    }
    // value = m * 2^e2 with e2 even.
    let mut m = a.sig as u128;
    let mut e2 = a.exp - 63;
    if e2 & 1 != 0 {
        m <<= 1;
        e2 -= 1;
    }
    // Bit-by-bit square root of N = m << 66 (132 bits), giving 66 bits.
    let mut root: u128 = 0;
    let mut rem: u128 = 0;
    for j in (0..66i32).rev() {
        let p = 2 * j - 66; // bit position of the pair's low bit in m
        let pair = if p >= 0 { (m >> p) & 3 } else if p == -1 { (m << 1) & 3 } else { 0 };
        rem = (rem << 2) | pair;
        let trial = (root << 2) | 1;
        if rem >= trial {
            rem -= trial;
            root = (root << 1) | 1;
        } else {
            root <<= 1;
        }
    }
    let sig = (root << 20) | (rem != 0) as u128;
    round(env, fmt, false, e2 / 2 + 74, sig)
}

/// Integer to float (exact unless the format is narrower than 64 bits).
pub fn from_i64(env: &mut Env, fmt: Fmt, v: i64) -> F {
    round(env, fmt, v < 0, 127, v.unsigned_abs() as u128)
}

/// Round to an integer value in the same format (x87 frndint).
pub fn round_to_int(env: &mut Env, a: F, rc: u8) -> F {
    match a.kind {
        Kind::Bad => invalid(env),
        Kind::QNaN | Kind::SNaN => propagate(env, a, a),
        Kind::Finite if a.exp < 63 => {
            let (k, inexact, up) = round_bits((a.sig as u128) << 64, (127 - a.exp) as u32, a.sign, rc);
            if inexact {
                env.flags |= PE;
            }
            if up {
                env.flags |= UP;
            }
            if k == 0 {
                return F::zero(a.sign);
            }
            let mut e = Env { flags: 0, ..*env };
            round(&mut e, F80, a.sign, 127, k)
        }
        _ => a,
    }
}

/// Float to a signed integer of `bits` bits.  None means invalid (NaN,
/// infinity or out of range): the caller stores the integer indefinite.
pub fn to_int(env: &mut Env, a: F, rc: u8, bits: u32) -> Option<i64> {
    match a.kind {
        Kind::Zero => Some(0),
        Kind::Finite => {
            if a.exp >= 64 {
                env.flags |= IE;
                return None;
            }
            let (k, inexact, up) = round_bits((a.sig as u128) << 64, (127 - a.exp) as u32, a.sign, rc);
            let limit = 1u128 << (bits - 1);
            if k > limit || (k == limit && !a.sign) {
                env.flags |= IE;
                return None;
            }
            if inexact {
                env.flags |= PE;
            }
            if up {
                env.flags |= UP;
            }
            Some(if a.sign { (k as i128).wrapping_neg() as i64 } else { k as i64 })
        }
        _ => {
            env.flags |= IE;
            None
        }
    }
}

/// Compare.  None = unordered.  Signals IE for SNaNs always and for QNaNs
/// when `signalling`.
pub fn compare(env: &mut Env, a: F, b: F, signalling: bool) -> Option<std::cmp::Ordering> {
    use std::cmp::Ordering::*;
    if a.kind == Kind::Bad || b.kind == Kind::Bad {
        env.flags |= IE;
        return None;
    }
    if a.is_nan() || b.is_nan() {
        if signalling || a.kind == Kind::SNaN || b.kind == Kind::SNaN {
            env.flags |= IE;
        }
        return None;
    }
    let key = |x: F| -> (i8, i32, u64) {
        match x.kind {
            Kind::Zero => (0, 0, 0),
            Kind::Inf => (2, 0, 0),
            _ => (1, x.exp, x.sig),
        }
    };
    let (ka, kb) = (key(a), key(b));
    if ka.0 == 0 && kb.0 == 0 {
        return Some(Equal);
    }
    // The sign decides first (a zero sits between the signs).
    let ra = if ka.0 == 0 { 0 } else if a.sign { -1 } else { 1 };
    let rb = if kb.0 == 0 { 0 } else if b.sign { -1 } else { 1 };
    if ra != rb {
        return Some(ra.cmp(&rb));
    }
    let mag = ka.cmp(&kb);
    Some(if ra < 0 { mag.reverse() } else { mag })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f64v(x: f64) -> F {
        unpack_f64(x.to_bits(), false).0
    }
    fn to64(_: &mut Env, a: F) -> f64 {
        f64::from_bits(pack_f64(a))
    }

    #[test]
    fn double_arithmetic_matches_host_round_to_nearest() {
        let vals = [1.0, 3.0, 0.1, -2.5, 1e300, 1e-300, 5e-324, 2.2250738585072014e-308, -7.0, 123456.789, 0.0, -0.0];
        for &x in &vals {
            for &y in &vals {
                let mut e = Env::new(RN, false);
                let (a, b) = (f64v(x), f64v(y));
                assert_eq!(to64(&mut Env::new(RN, false), add(&mut e, F64, a, b, false)).to_bits(), (x + y).to_bits(), "{x}+{y}");
                assert_eq!(to64(&mut Env::new(RN, false), add(&mut e, F64, a, b, true)).to_bits(), (x - y).to_bits(), "{x}-{y}");
                assert_eq!(to64(&mut Env::new(RN, false), mul(&mut e, F64, a, b)).to_bits(), (x * y).to_bits(), "{x}*{y}");
                let q = div(&mut e, F64, a, b);
                assert_eq!(to64(&mut Env::new(RN, false), q).to_bits(), (x / y).to_bits(), "{x}/{y}");
            }
            let mut e = Env::new(RN, false);
            let s = to64(&mut Env::new(RN, false), sqrt(&mut e, F64, f64v(x)));
            assert!(s.to_bits() == x.sqrt().to_bits() || (s.is_nan() && x.sqrt().is_nan()), "sqrt {x}");
        }
    }

    #[test]
    fn conversions_round_trip() {
        for bits in [0u32, 1, 0x7f7fffff, 0x00800000, 0x007fffff, 0x7f800000, 0xffc00000, 0x7f800001, 0x3f800000] {
            let (a, _) = unpack_f32(bits, false);
            let mut e = Env::new(RN, false);
            assert_eq!(pack_f32(round_f(&mut e, F32, a.quiet())), if bits == 0x7f800001 { 0x7fc00001 } else { bits });
        }
        let (a, _) = unpack_f80(0xC90F_DAA2_2168_C235, 0x4000);
        assert_eq!(pack_f80(a), (0xC90F_DAA2_2168_C235, 0x4000));
    }

    #[test]
    fn integer_conversion() {
        let mut e = Env::new(RN, true);
        assert_eq!(to_int(&mut e, f64v(2.5), RN, 32), Some(2));
        assert_eq!(to_int(&mut e, f64v(-2.5), RZ, 32), Some(-2));
        assert_eq!(to_int(&mut e, f64v(-2.5), RD, 32), Some(-3));
        assert_eq!(to_int(&mut e, f64v(2147483648.0), RN, 32), None);
        assert_eq!(to_int(&mut e, f64v(-2147483648.0), RN, 32), Some(-2147483648));
        assert_eq!(to_int(&mut e, f64v(-9223372036854775808.0), RN, 64), Some(i64::MIN));
    }
}
