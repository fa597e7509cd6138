//! Unit tests for the floating-point and vector units.

use crate::bare::BareCpu;
use crate::cpu::state::Exit;

pub fn run(code: &[u8]) -> (BareCpu, Exit) {
    let mut b = BareCpu::new();
    b.mem_map(0x1000, 0x1000).unwrap();
    b.mem_map(0x8000, 0x2000).unwrap();
    b.mem_write(0x1000, code).unwrap();
    b.reg_write("esp", 0x9000).unwrap();
    let end = 0x1000 + code.len() as u32;
    let e = b.run(Some(0x1000), 0, Some(end));
    (b, e)
}

#[test]
fn fld1_fadd_fstp() {
    // fld1; fld1; faddp; fstp qword [0x8000]
    let (b, e) = run(&[0xd9, 0xe8, 0xd9, 0xe8, 0xde, 0xc1, 0xdd, 0x1d, 0, 0x80, 0, 0]);
    assert_eq!(e, Exit::Address);
    let v = b.mem_read(0x8000, 8).unwrap();
    assert_eq!(f64::from_le_bytes(v.try_into().unwrap()), 2.0);
    assert_eq!(b.cpu.fpu.top, 0);
    assert_eq!(b.cpu.fpu.empty, 0xff);
}

/// A small deterministic generator for test inputs.
pub struct Rng(u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// An 80-bit value biased towards the interesting corners.
    pub fn f80(&mut self) -> (u64, u16) {
        let r = self.next();
        let sign = ((r & 1) as u16) << 15;
        let exp = match (r >> 1) % 16 {
            0 => 0,
            1 => 1,
            2 => 0x7fff,
            3 => 0x7ffe,
            4 => 0x3fff - 16382 + (self.next() % 80) as u16,
            5 => 0x3fff + 16000 + (self.next() % 384) as u16,
            6 => 0x3fff - 1022 - (self.next() % 70) as u16,
            7 => 0x3fff + 1020 + (self.next() % 8) as u16,
            8 => 0x3fff - 126 - (self.next() % 30) as u16,
            _ => 0x3fff - 40 + (self.next() % 80) as u16,
        };
        let sig = match (r >> 5) % 8 {
            0 => 1 << 63,
            1 => !0,
            2 => (1 << 63) | (self.next() & 0xffff),
            3 => (1 << 63) | (self.next() << 40),
            4 => self.next() >> (self.next() % 64),
            _ => self.next() | 1 << 63,
        };
        let sig = if exp == 0 && !(r >> 9).is_multiple_of(4) { sig >> 1 } else if exp != 0 && !(r >> 9).is_multiple_of(64) { sig | 1 << 63 } else { sig };
        (sig, sign | exp)
    }
}

#[cfg(target_arch = "x86_64")]
mod host {
    //! The host processor as the oracle: the same operation run natively
    //! (x87 and SSE are there in 64-bit mode too) and on the interpreter.
    use super::*;
    use crate::cpu::fpu::Reg;

    fn le80(v: (u64, u16)) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&v.0.to_le_bytes());
        b[8..10].copy_from_slice(&v.1.to_le_bytes());
        b
    }

    macro_rules! host_x87 {
        ($insn:literal, $cw:expr, $a:expr, $b:expr) => {{
            let cw: u16 = $cw;
            let a = le80($a);
            let b = le80($b);
            let mut out = [0u8; 16];
            let mut sw: u16 = 0;
            // SAFETY: the asm only touches the x87 state (left reset by
            // fninit) and the buffers passed in.
            unsafe {
                core::arch::asm!(
                    "fninit",
                    "fldcw word ptr [{cw}]",
                    "fld tbyte ptr [{b}]",
                    "fld tbyte ptr [{a}]",
                    $insn,
                    "fnstsw word ptr [{sw}]",
                    "fstp tbyte ptr [{o}]",
                    "fninit",
                    cw = in(reg) &cw, a = in(reg) a.as_ptr(), b = in(reg) b.as_ptr(),
                    o = in(reg) out.as_mut_ptr(), sw = in(reg) &mut sw,
                );
            }
            (u64::from_le_bytes(out[..8].try_into().unwrap()), u16::from_le_bytes([out[8], out[9]]), sw)
        }};
    }

    /// Run `insn` (machine code) on the interpreter with ST0=a, ST1=b.
    fn ours(insn: &[u8], cw: u16, a: (u64, u16), b: (u64, u16)) -> (u64, u16, u16) {
        let mut code = insn.to_vec();
        // fnstsw [0x8100]
        code.extend_from_slice(&[0xdd, 0x3d, 0, 0x81, 0, 0]);
        let mut bc = BareCpu::new();
        bc.mem_map(0x1000, 0x1000).unwrap();
        bc.mem_map(0x8000, 0x1000).unwrap();
        bc.mem_write(0x1000, &code).unwrap();
        let f = &mut bc.cpu.fpu;
        f.cw = cw;
        f.top = 6;
        f.empty = 0x3f;
        f.r[6] = Reg { sig: a.0, se: a.1 };
        f.r[7] = Reg { sig: b.0, se: b.1 };
        let e = bc.run(Some(0x1000), 0, Some(0x1000 + code.len() as u32));
        assert_eq!(e, Exit::Address);
        let sw = u16::from_le_bytes(bc.mem_read(0x8100, 2).unwrap().try_into().unwrap());
        let r = bc.cpu.fpu.st_reg(0);
        (r.sig, r.se, sw)
    }

    fn check(name: &str, insn: &[u8], host: impl Fn(u16, (u64, u16), (u64, u16)) -> (u64, u16, u16), n: usize, swmask: u16) {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ insn.iter().fold(7u64, |h, &b| h * 31 + b as u64));
        let mut bad = 0;
        for k in 0..n {
            let a = rng.f80();
            let b = if k % 5 == 0 { a } else { rng.f80() };
            let cw = 0x3f | 0x40 | ((rng.next() % 4) as u16) << 10 | [0u16, 2, 3][(rng.next() % 3) as usize] << 8;
            let h = host(cw, a, b);
            let o = ours(insn, cw, a, b);
            if (h.0, h.1, h.2 & swmask) != (o.0, o.1, o.2 & swmask) {
                bad += 1;
                if bad < 10 {
                    eprintln!("{name} cw={cw:04x} a={:04x}:{:016x} b={:04x}:{:016x}: host {:04x}:{:016x} sw {:04x}, ours {:04x}:{:016x} sw {:04x}", a.1, a.0, b.1, b.0, h.1, h.0, h.2, o.1, o.0, o.2);
                }
            }
        }
        assert_eq!(bad, 0, "{name}: {bad} of {n} differ from the host");
    }

    const SW_ALL: u16 = 0x47ff;
    const SW_FLAGS: u16 = 0x007f;

    #[test]
    fn x87_arith_vs_host() {
        check("fadd", &[0xd8, 0xc1], |c, a, b| host_x87!("fadd st, st(1)", c, a, b), 8000, SW_ALL);
        check("fsub", &[0xd8, 0xe1], |c, a, b| host_x87!("fsub st, st(1)", c, a, b), 8000, SW_ALL);
        check("fsubr", &[0xd8, 0xe9], |c, a, b| host_x87!("fsubr st, st(1)", c, a, b), 5000, SW_ALL);
        check("fmul", &[0xd8, 0xc9], |c, a, b| host_x87!("fmul st, st(1)", c, a, b), 8000, SW_ALL);
        check("fdiv", &[0xd8, 0xf1], |c, a, b| host_x87!("fdiv st, st(1)", c, a, b), 8000, SW_ALL);
        check("fdivr", &[0xd8, 0xf9], |c, a, b| host_x87!("fdivr st, st(1)", c, a, b), 5000, SW_ALL);
        check("fsqrt", &[0xd9, 0xfa], |c, a, b| host_x87!("fsqrt", c, a, b), 8000, SW_ALL);
    }

    #[test]
    fn x87_misc_vs_host() {
        check("frndint", &[0xd9, 0xfc], |c, a, b| host_x87!("frndint", c, a, b), 10000, SW_ALL);
        check("fscale", &[0xd9, 0xfd], |c, a, b| host_x87!("fscale", c, a, b), 10000, SW_ALL);
        check("fprem", &[0xd9, 0xf8], |c, a, b| host_x87!("fprem", c, a, b), 10000, SW_ALL);
        check("fprem1", &[0xd9, 0xf5], |c, a, b| host_x87!("fprem1", c, a, b), 10000, SW_ALL);
        check("fxam", &[0xd9, 0xe5], |c, a, b| host_x87!("fxam", c, a, b), 5000, SW_ALL);
        check("fcom", &[0xd8, 0xd1], |c, a, b| host_x87!("fcom st(1)", c, a, b), 5000, SW_ALL);
        check("fucom", &[0xdd, 0xe1], |c, a, b| host_x87!("fucom st(1)", c, a, b), 5000, SW_ALL);
        check("ftst", &[0xd9, 0xe4], |c, a, b| host_x87!("ftst", c, a, b), 5000, SW_ALL);
        check("fxch", &[0xd9, 0xc9], |c, a, b| host_x87!("fxch st(1)", c, a, b), 500, SW_ALL);
        check("fchs", &[0xd9, 0xe0], |c, a, b| host_x87!("fchs", c, a, b), 500, SW_ALL);
        check("fabs", &[0xd9, 0xe1], |c, a, b| host_x87!("fabs", c, a, b), 500, SW_ALL);
    }

    #[test]
    fn x87_constants_vs_host() {
        let consts: [(&str, u8); 7] = [("fld1", 0xe8), ("fldl2t", 0xe9), ("fldl2e", 0xea), ("fldpi", 0xeb), ("fldlg2", 0xec), ("fldln2", 0xed), ("fldz", 0xee)];
        for (name, op) in consts {
            // fstp st(0) twice, then load the constant: ST1=a, ST0=const.
            let insn = [0xdd, 0xd8, 0xdd, 0xd8, 0xd9, op];
            let host = |c: u16, a: (u64, u16), b: (u64, u16)| match op {
                0xe8 => host_x87!("fstp st(0)\nfstp st(0)\nfld1", c, a, b),
                0xe9 => host_x87!("fstp st(0)\nfstp st(0)\nfldl2t", c, a, b),
                0xea => host_x87!("fstp st(0)\nfstp st(0)\nfldl2e", c, a, b),
                0xeb => host_x87!("fstp st(0)\nfstp st(0)\nfldpi", c, a, b),
                0xec => host_x87!("fstp st(0)\nfstp st(0)\nfldlg2", c, a, b),
                0xed => host_x87!("fstp st(0)\nfstp st(0)\nfldln2", c, a, b),
                _ => host_x87!("fstp st(0)\nfstp st(0)\nfldz", c, a, b),
            };
            check(name, &insn, host, 200, SW_ALL);
        }
    }

    #[test]
    fn x87_stores_vs_host() {
        // fst to memory and reload, so the register shows the rounded value.
        // fst dword [0x8200]; fld dword [0x8200]
        check("fst m32", &[0xd9, 0x15, 0, 0x82, 0, 0, 0xd9, 0x05, 0, 0x82, 0, 0], |c, a, b| host_x87!("sub rsp, 16\nfst dword ptr [rsp]\nfld dword ptr [rsp]\nadd rsp, 16", c, a, b), 8000, SW_FLAGS);
        check("fst m64", &[0xdd, 0x15, 0, 0x82, 0, 0, 0xdd, 0x05, 0, 0x82, 0, 0], |c, a, b| host_x87!("sub rsp, 16\nfst qword ptr [rsp]\nfld qword ptr [rsp]\nadd rsp, 16", c, a, b), 8000, SW_FLAGS);
        check("fist m32", &[0xdb, 0x15, 0, 0x82, 0, 0, 0xdb, 0x05, 0, 0x82, 0, 0], |c, a, b| host_x87!("sub rsp, 16\nfist dword ptr [rsp]\nfild dword ptr [rsp]\nadd rsp, 16", c, a, b), 8000, SW_FLAGS);
        check("fistp m64", &[0xdf, 0x3d, 0, 0x82, 0, 0, 0xdf, 0x2d, 0, 0x82, 0, 0], |c, a, b| host_x87!("sub rsp, 16\nfistp qword ptr [rsp]\nfild qword ptr [rsp]\nadd rsp, 16", c, a, b), 8000, SW_FLAGS);
        check("fist m16", &[0xdf, 0x15, 0, 0x82, 0, 0, 0xdf, 0x05, 0, 0x82, 0, 0], |c, a, b| host_x87!("sub rsp, 16\nfist word ptr [rsp]\nfild word ptr [rsp]\nadd rsp, 16", c, a, b), 10000, SW_FLAGS);
    }
}

#[cfg(target_arch = "x86_64")]
mod host_sse {
    //! SSE/SSE2 scalar and packed operations against the host, with random
    //! MXCSR rounding modes, FTZ and DAZ (all exceptions masked).
    use super::*;

    macro_rules! host_sse {
        ($insn:literal, $mx:expr, $a:expr, $b:expr) => {{
            let mx: u32 = $mx;
            let a: u128 = $a;
            let b: u128 = $b;
            let mut out: u128 = 0;
            let mut mxo: u32 = 0;
            let mut fl: u64;
            let mut gpr: u64;
            // SAFETY: saves and restores the host MXCSR around the operation;
            // touches only xmm0/xmm1, eax and the buffers passed in.
            unsafe {
                core::arch::asm!(
                    "sub rsp, 8",
                    "stmxcsr [rsp]",
                    "ldmxcsr [{mx}]",
                    "movdqu xmm0, [{a}]",
                    "movdqu xmm1, [{b}]",
                    "xor eax, eax",
                    $insn,
                    "pushfq",
                    "pop {fl}",
                    "movdqu [{o}], xmm0",
                    "stmxcsr [{mxo}]",
                    "ldmxcsr [rsp]",
                    "add rsp, 8",
                    mx = in(reg) &mx, a = in(reg) &a, b = in(reg) &b, o = in(reg) &mut out,
                    mxo = in(reg) &mut mxo, fl = out(reg) fl, out("rax") gpr, out("xmm0") _, out("xmm1") _,
                );
            }
            (out, mxo, (fl & 0x8d5) as u32, gpr as u32)
        }};
    }

    fn ours(insn: &[u8], mx: u32, a: u128, b: u128) -> (u128, u32, u32, u32) {
        let mut bc = BareCpu::new();
        bc.mem_map(0x1000, 0x1000).unwrap();
        bc.mem_write(0x1000, insn).unwrap();
        bc.cpu.fpu.mxcsr = mx;
        bc.cpu.fpu.xmm[0] = a;
        bc.cpu.fpu.xmm[1] = b;
        bc.reg_write("eax", 0).unwrap();
        // What the host's `xor eax, eax` leaves: ZF and PF.
        bc.reg_write("eflags", 0x44).unwrap();
        let e = bc.run(Some(0x1000), 0, Some(0x1000 + insn.len() as u32));
        assert_eq!(e, Exit::Address);
        (bc.cpu.fpu.xmm[0], bc.cpu.fpu.mxcsr, bc.reg_read("eflags").unwrap() as u32 & 0x8d5, bc.cpu.regs[0])
    }

    fn f32s(r: &mut Rng) -> u32 {
        let x = r.next();
        let e: u32 = match x % 8 {
            0 => 0,
            1 => 255,
            2 => 1,
            3 => 254,
            _ => 127 - 30 + (r.next() % 60) as u32,
        };
        let f = match (x >> 3) % 4 {
            0 => 0,
            1 => 0x7fffff,
            _ => r.next() as u32 & 0x7fffff,
        };
        ((x >> 8) as u32 & 1) << 31 | e << 23 | f
    }

    fn f64s(r: &mut Rng) -> u64 {
        let x = r.next();
        let e: u64 = match x % 8 {
            0 => 0,
            1 => 2047,
            2 => 1,
            3 => 2046,
            4 => 1023 - 126 - (r.next() % 30),
            _ => 1023 - 40 + (r.next() % 80),
        };
        let f = match (x >> 3) % 4 {
            0 => 0,
            1 => (1 << 52) - 1,
            _ => r.next() & ((1 << 52) - 1),
        };
        (x >> 8 & 1) << 63 | e << 52 | f
    }

    fn vec(r: &mut Rng, dbl: bool) -> u128 {
        if dbl {
            f64s(r) as u128 | (f64s(r) as u128) << 64
        } else {
            (0..4).fold(0u128, |v, k| v | (f32s(r) as u128) << (32 * k))
        }
    }

    fn check(name: &str, insn: &[u8], dbl: bool, host: impl Fn(u32, u128, u128) -> (u128, u32, u32, u32), n: usize) {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d ^ insn.iter().fold(3u64, |h, &b| h * 131 + b as u64));
        let mut bad = 0;
        for k in 0..n {
            let a = vec(&mut rng, dbl);
            let b = if k % 7 == 0 { a } else { vec(&mut rng, dbl) };
            let mx = 0x1f80 | ((rng.next() % 4) as u32) << 13 | if rng.next().is_multiple_of(4) { 0x8000 } else { 0 } | if rng.next().is_multiple_of(4) { 0x40 } else { 0 };
            let h = host(mx, a, b);
            let o = ours(insn, mx, a, b);
            if h != o {
                bad += 1;
                if bad < 8 {
                    eprintln!("{name} mx={mx:04x} a={a:032x} b={b:032x}: host {:032x} {:04x} fl {:x} eax {:x}; ours {:032x} {:04x} fl {:x} eax {:x}", h.0, h.1, h.2, h.3, o.0, o.1, o.2, o.3);
                }
            }
        }
        assert_eq!(bad, 0, "{name}: {bad} of {n} differ from the host");
    }

    macro_rules! t {
        ($name:literal, $bytes:expr, $dbl:expr, $n:expr) => {
            check($name, &$bytes, $dbl, |m, a, b| host_sse!($name, m, a, b), $n)
        };
    }

    #[test]
    fn sse_arith_vs_host() {
        t!("addps xmm0, xmm1", [0x0f, 0x58, 0xc1], false, 5000);
        t!("subss xmm0, xmm1", [0xf3, 0x0f, 0x5c, 0xc1], false, 5000);
        t!("mulps xmm0, xmm1", [0x0f, 0x59, 0xc1], false, 5000);
        t!("divps xmm0, xmm1", [0x0f, 0x5e, 0xc1], false, 5000);
        t!("sqrtps xmm0, xmm1", [0x0f, 0x51, 0xc1], false, 5000);
        t!("minps xmm0, xmm1", [0x0f, 0x5d, 0xc1], false, 3000);
        t!("maxss xmm0, xmm1", [0xf3, 0x0f, 0x5f, 0xc1], false, 3000);
        t!("addpd xmm0, xmm1", [0x66, 0x0f, 0x58, 0xc1], true, 5000);
        t!("subsd xmm0, xmm1", [0xf2, 0x0f, 0x5c, 0xc1], true, 5000);
        t!("mulpd xmm0, xmm1", [0x66, 0x0f, 0x59, 0xc1], true, 5000);
        t!("divsd xmm0, xmm1", [0xf2, 0x0f, 0x5e, 0xc1], true, 5000);
        t!("sqrtpd xmm0, xmm1", [0x66, 0x0f, 0x51, 0xc1], true, 5000);
        t!("minpd xmm0, xmm1", [0x66, 0x0f, 0x5d, 0xc1], true, 3000);
        t!("maxpd xmm0, xmm1", [0x66, 0x0f, 0x5f, 0xc1], true, 3000);
    }

    #[test]
    fn sse_compare_convert_vs_host() {
        t!("cmpps xmm0, xmm1, 1", [0x0f, 0xc2, 0xc1, 1], false, 3000);
        t!("cmpps xmm0, xmm1, 4", [0x0f, 0xc2, 0xc1, 4], false, 3000);
        t!("cmppd xmm0, xmm1, 6", [0x66, 0x0f, 0xc2, 0xc1, 6], true, 3000);
        t!("cmpsd xmm0, xmm1, 3", [0xf2, 0x0f, 0xc2, 0xc1, 3], true, 3000);
        t!("ucomiss xmm0, xmm1", [0x0f, 0x2e, 0xc1], false, 3000);
        t!("comiss xmm0, xmm1", [0x0f, 0x2f, 0xc1], false, 3000);
        t!("ucomisd xmm0, xmm1", [0x66, 0x0f, 0x2e, 0xc1], true, 3000);
        t!("comisd xmm0, xmm1", [0x66, 0x0f, 0x2f, 0xc1], true, 3000);
        t!("cvtss2sd xmm0, xmm1", [0xf3, 0x0f, 0x5a, 0xc1], false, 3000);
        t!("cvtsd2ss xmm0, xmm1", [0xf2, 0x0f, 0x5a, 0xc1], true, 5000);
        t!("cvtps2pd xmm0, xmm1", [0x0f, 0x5a, 0xc1], false, 3000);
        t!("cvtpd2ps xmm0, xmm1", [0x66, 0x0f, 0x5a, 0xc1], true, 5000);
        t!("cvtps2dq xmm0, xmm1", [0x66, 0x0f, 0x5b, 0xc1], false, 5000);
        t!("cvttps2dq xmm0, xmm1", [0xf3, 0x0f, 0x5b, 0xc1], false, 5000);
        t!("cvtdq2ps xmm0, xmm1", [0x0f, 0x5b, 0xc1], false, 5000);
        t!("cvtpd2dq xmm0, xmm1", [0xf2, 0x0f, 0xe6, 0xc1], true, 5000);
        t!("cvttpd2dq xmm0, xmm1", [0x66, 0x0f, 0xe6, 0xc1], true, 5000);
        t!("cvtdq2pd xmm0, xmm1", [0xf3, 0x0f, 0xe6, 0xc1], false, 3000);
        t!("cvtss2si eax, xmm1", [0xf3, 0x0f, 0x2d, 0xc1], false, 5000);
        t!("cvttsd2si eax, xmm1", [0xf2, 0x0f, 0x2c, 0xc1], true, 5000);
    }

    #[test]
    fn sse_int_vs_host() {
        t!("paddusb xmm0, xmm1", [0x66, 0x0f, 0xdc, 0xc1], false, 300);
        t!("psubsw xmm0, xmm1", [0x66, 0x0f, 0xe9, 0xc1], false, 300);
        t!("pmulhw xmm0, xmm1", [0x66, 0x0f, 0xe5, 0xc1], false, 300);
        t!("pmulhuw xmm0, xmm1", [0x66, 0x0f, 0xe4, 0xc1], false, 300);
        t!("pmaddwd xmm0, xmm1", [0x66, 0x0f, 0xf5, 0xc1], false, 300);
        t!("pmuludq xmm0, xmm1", [0x66, 0x0f, 0xf4, 0xc1], false, 300);
        t!("packsswb xmm0, xmm1", [0x66, 0x0f, 0x63, 0xc1], false, 300);
        t!("packssdw xmm0, xmm1", [0x66, 0x0f, 0x6b, 0xc1], false, 300);
        t!("packuswb xmm0, xmm1", [0x66, 0x0f, 0x67, 0xc1], false, 300);
        t!("punpcklbw xmm0, xmm1", [0x66, 0x0f, 0x60, 0xc1], false, 100);
        t!("punpckhwd xmm0, xmm1", [0x66, 0x0f, 0x69, 0xc1], false, 100);
        t!("punpckhqdq xmm0, xmm1", [0x66, 0x0f, 0x6d, 0xc1], false, 100);
        t!("pcmpgtb xmm0, xmm1", [0x66, 0x0f, 0x64, 0xc1], false, 300);
        t!("pcmpeqw xmm0, xmm1", [0x66, 0x0f, 0x75, 0xc1], true, 300);
        t!("psraw xmm0, xmm1", [0x66, 0x0f, 0xe1, 0xc1], false, 300);
        t!("psrlq xmm0, 13", [0x66, 0x0f, 0x73, 0xd0, 13], false, 100);
        t!("pslld xmm0, 7", [0x66, 0x0f, 0x72, 0xf0, 7], false, 100);
        t!("psrad xmm0, 40", [0x66, 0x0f, 0x72, 0xe0, 40], false, 100);
        t!("pslldq xmm0, 5", [0x66, 0x0f, 0x73, 0xf8, 5], false, 100);
        t!("psrldq xmm0, 3", [0x66, 0x0f, 0x73, 0xd8, 3], false, 100);
        t!("pavgb xmm0, xmm1", [0x66, 0x0f, 0xe0, 0xc1], false, 300);
        t!("pminsw xmm0, xmm1", [0x66, 0x0f, 0xea, 0xc1], false, 300);
        t!("pmaxub xmm0, xmm1", [0x66, 0x0f, 0xde, 0xc1], false, 300);
        t!("psadbw xmm0, xmm1", [0x66, 0x0f, 0xf6, 0xc1], false, 300);
        t!("pshufd xmm0, xmm1, 0x1b", [0x66, 0x0f, 0x70, 0xc1, 0x1b], false, 100);
        t!("pshufhw xmm0, xmm1, 0x93", [0xf3, 0x0f, 0x70, 0xc1, 0x93], false, 100);
        t!("pshuflw xmm0, xmm1, 0x4e", [0xf2, 0x0f, 0x70, 0xc1, 0x4e], false, 100);
        t!("shufps xmm0, xmm1, 0xb1", [0x0f, 0xc6, 0xc1, 0xb1], false, 100);
        t!("shufpd xmm0, xmm1, 2", [0x66, 0x0f, 0xc6, 0xc1, 2], true, 100);
        t!("unpcklps xmm0, xmm1", [0x0f, 0x14, 0xc1], false, 100);
        t!("unpckhpd xmm0, xmm1", [0x66, 0x0f, 0x15, 0xc1], true, 100);
        t!("movss xmm0, xmm1", [0xf3, 0x0f, 0x10, 0xc1], false, 100);
        t!("movsd xmm0, xmm1", [0xf2, 0x0f, 0x10, 0xc1], true, 100);
        t!("movhlps xmm0, xmm1", [0x0f, 0x12, 0xc1], false, 100);
        t!("movlhps xmm0, xmm1", [0x0f, 0x16, 0xc1], false, 100);
        t!("movq xmm0, xmm1", [0xf3, 0x0f, 0x7e, 0xc1], false, 100);
        t!("pmovmskb eax, xmm1", [0x66, 0x0f, 0xd7, 0xc1], false, 100);
        t!("movmskps eax, xmm1", [0x0f, 0x50, 0xc1], false, 100);
        t!("movmskpd eax, xmm1", [0x66, 0x0f, 0x50, 0xc1], true, 100);
        t!("pextrw eax, xmm1, 5", [0x66, 0x0f, 0xc5, 0xc1, 5], false, 100);
        t!("pinsrw xmm0, eax, 3", [0x66, 0x0f, 0xc4, 0xc0, 3], false, 100);
        t!("andnps xmm0, xmm1", [0x0f, 0x55, 0xc1], false, 100);
    }
}

fn vector(e: Exit) -> u8 {
    match e {
        Exit::Fault(f) => f.vector,
        other => panic!("expected a fault, got {other:?}"),
    }
}

#[test]
fn ts_raises_nm_before_anything() {
    // fld1 / wait / addps xmm0,xmm1 / paddb mm0,mm1 / fxsave [0x8000] all #NM.
    for code in [&[0xd9u8, 0xe8][..], &[0x9b], &[0x0f, 0x58, 0xc1], &[0x0f, 0xfc, 0xc1], &[0x0f, 0xae, 0x05, 0, 0x80, 0, 0]] {
        let mut b = BareCpu::new();
        b.mem_map(0x1000, 0x1000).unwrap();
        b.mem_write(0x1000, code).unwrap();
        b.cpu.ts = true;
        assert_eq!(vector(b.run(Some(0x1000), 0, Some(0x1000 + code.len() as u32))), 7, "{code:x?}");
        assert_eq!(b.reg_read("eip").unwrap(), 0x1000);
        assert_eq!(b.cpu.fpu.empty, 0xff);
    }
}

#[test]
fn unmasked_x87_exception_is_mf_at_next_wait() {
    // fldcw [0x8000] (cw=0x37b: ZE unmasked); fldz; fld1; fdiv st0, st1; fnop
    let mut code = vec![0xd9, 0x2d, 0, 0x80, 0, 0, 0xd9, 0xee, 0xd9, 0xe8, 0xd8, 0xf1, 0xd9, 0xd0];
    let mut b = BareCpu::new();
    b.mem_map(0x1000, 0x1000).unwrap();
    b.mem_map(0x8000, 0x1000).unwrap();
    b.mem_write(0x8000, &0x37bu16.to_le_bytes()).unwrap();
    b.mem_write(0x1000, &code).unwrap();
    let e = b.run(Some(0x1000), 0, Some(0x1000 + code.len() as u32));
    assert_eq!(vector(e), 16);
    // The fault is on the fnop after the fdiv, whose destination is unchanged.
    assert_eq!(b.reg_read("eip").unwrap(), 0x100c);
    let sw = b.cpu.fpu.status();
    assert_eq!(sw & 0x80ff, 0x8084);
    assert_eq!(b.reg_read("st0").unwrap(), 0x3fff_8000_0000_0000_0000);
    // fnclex clears it and the program goes on.
    code.truncate(12);
    code.extend_from_slice(&[0xdb, 0xe2, 0xd9, 0xd0]);
    b.mem_write(0x1000, &code).unwrap();
    assert_eq!(b.run(Some(0x100c), 0, Some(0x1010)), Exit::Address);
}

#[test]
fn unmasked_sse_exception_is_xm() {
    // ldmxcsr [0x8000] (ZM clear); divss xmm0, xmm1 with xmm1 = 0
    let code = [0x0f, 0xae, 0x15, 0, 0x80, 0, 0, 0xf3, 0x0f, 0x5e, 0xc1];
    let mut b = BareCpu::new();
    b.mem_map(0x1000, 0x1000).unwrap();
    b.mem_map(0x8000, 0x1000).unwrap();
    b.mem_write(0x8000, &(0x1f80u32 & !0x200).to_le_bytes()).unwrap();
    b.mem_write(0x1000, &code).unwrap();
    b.reg_write("xmm0", 1.0f32.to_bits() as u128).unwrap();
    assert_eq!(vector(b.run(Some(0x1000), 0, Some(0x1000 + code.len() as u32))), 19);
    assert_eq!(b.reg_read("eip").unwrap(), 0x1007);
    assert_eq!(b.reg_read("xmm0").unwrap(), 1.0f32.to_bits() as u128);
    assert_eq!(b.reg_read("mxcsr").unwrap(), 0x1d80 | 4);
}

#[test]
fn misaligned_movaps_is_gp_but_movups_is_not() {
    // movaps xmm0, [0x8004]; movups xmm0, [0x8004]
    let (_, e) = run(&[0x0f, 0x28, 0x05, 4, 0x80, 0, 0]);
    assert_eq!(vector(e), 13);
    let (b, e) = run(&[0x0f, 0x10, 0x05, 4, 0x80, 0, 0]);
    assert_eq!(e, Exit::Address);
    assert_eq!(b.reg_read("xmm0").unwrap(), 0);
    // fxsave to a misaligned address
    let (_, e) = run(&[0x0f, 0xae, 0x05, 8, 0x80, 0, 0]);
    assert_eq!(vector(e), 13);
}

#[test]
fn mmx_aliases_x87_and_emms_empties() {
    // mov eax, 0x11223344; movd mm1, eax; paddd mm1, mm1
    let (b, e) = run(&[0xb8, 0x44, 0x33, 0x22, 0x11, 0x0f, 0x6e, 0xc8, 0x0f, 0xfe, 0xc9]);
    assert_eq!(e, Exit::Address);
    assert_eq!(b.reg_read("mm1").unwrap(), 0x22446688);
    assert_eq!(b.cpu.fpu.r[1].se, 0xffff);
    assert_eq!(b.cpu.fpu.top, 0);
    assert_eq!(b.cpu.fpu.empty, 0);
    let (b, _) = run(&[0x0f, 0x6e, 0xc8, 0x0f, 0x77]);
    assert_eq!(b.cpu.fpu.empty, 0xff);
    assert_eq!(b.reg_read("fptag").unwrap(), 0xffff);
}

#[test]
fn fxsave_fxrstor_round_trip() {
    // fldpi; fld1; fxsave [0x8000]; fninit; fxrstor [0x8000]; fstp tbyte [0x8400]
    let code = [0xd9, 0xeb, 0xd9, 0xe8, 0x0f, 0xae, 0x05, 0, 0x80, 0, 0, 0xdb, 0xe3, 0x0f, 0xae, 0x0d, 0, 0x80, 0, 0, 0xdb, 0x3d, 0, 0x84, 0, 0];
    let mut b = BareCpu::new();
    b.mem_map(0x1000, 0x1000).unwrap();
    b.mem_map(0x8000, 0x1000).unwrap();
    b.mem_write(0x1000, &code).unwrap();
    b.reg_write("xmm7", 0xdead_beef_u128 << 64).unwrap();
    assert_eq!(b.run(Some(0x1000), 0, Some(0x1000 + code.len() as u32)), Exit::Address);
    let img = b.mem_read(0x8000, 512).unwrap();
    assert_eq!(&img[0..2], &[0x7f, 0x03]);
    assert_eq!(u16::from_le_bytes([img[2], img[3]]) >> 11, 6);
    assert_eq!(img[4], 0xc0);
    assert_eq!(&img[24..32], &[0x80, 0x1f, 0, 0, 0xff, 0xff, 0, 0]);
    assert_eq!(b.mem_read(0x8400, 10).unwrap(), vec![0, 0, 0, 0, 0, 0, 0, 0x80, 0xff, 0x3f]);
    assert_eq!(b.reg_read("st0").unwrap(), 0x4000_C90F_DAA2_2168_C235);
    assert_eq!(b.reg_read("xmm7").unwrap(), 0xdead_beef_u128 << 64);
}

#[test]
fn stack_underflow_gives_indefinite() {
    // fadd st0, st1 on an empty stack; fnstsw ax
    let (b, _) = run(&[0xd8, 0xc1, 0xdf, 0xe0]);
    assert_eq!(b.reg_read("ax").unwrap() & 0x47, 0x41);
    // Nothing was pushed, so the indefinite went into an empty ST0 position.
    assert_eq!(b.reg_read("st0").unwrap(), 0xffff_c000_0000_0000_0000);
}

#[test]
fn fsave_image_and_frstor() {
    // fld1; fnsave [0x8000]; frstor [0x8000]; fnstenv [0x8100]
    let code = [0xd9, 0xe8, 0xdd, 0x35, 0, 0x80, 0, 0, 0xdd, 0x25, 0, 0x80, 0, 0, 0xd9, 0x35, 0, 0x81, 0, 0];
    let (b, e) = run(&code);
    assert_eq!(e, Exit::Address);
    let img = b.mem_read(0x8000, 108).unwrap();
    assert_eq!(&img[0..4], &[0x7f, 0x03, 0xff, 0xff]);
    assert_eq!(&img[8..12], &[0xff, 0x3f, 0xff, 0xff]);
    assert_eq!(&img[12..16], &0x1000u32.to_le_bytes());
    // FOP of fld1 (d9 e8) and the user code selector.
    assert_eq!(&img[16..20], &[0x73, 0, 0xe8, 0x01]);
    assert_eq!(&img[28..38], &[0, 0, 0, 0, 0, 0, 0, 0x80, 0xff, 0x3f]);
    assert_eq!(b.reg_read("st0").unwrap(), 0x3fff_8000_0000_0000_0000);
    // fnstenv masked every exception.
    assert_eq!(b.reg_read("fpcw").unwrap(), 0x37f);
}

fn st_f64(b: &BareCpu, i: u8) -> f64 {
    let r = b.cpu.fpu.st_reg(i);
    let (f, _) = crate::cpu::fpu::softfloat::unpack_f80(r.sig, r.se);
    let mut e = crate::cpu::fpu::softfloat::Env::new(0, true);
    let f = crate::cpu::fpu::softfloat::round_f(&mut e, crate::cpu::fpu::softfloat::F64, f);
    f64::from_bits(crate::cpu::fpu::softfloat::pack_f64(f))
}

#[test]
fn transcendental_functions_are_close() {
    // finit (with its wait); fldpi; fld1; fpatan  -> atan2(pi, 1)
    let (b, e) = run(&[0x9b, 0xdb, 0xe3, 0xd9, 0xeb, 0xd9, 0xe8, 0xd9, 0xf3]);
    assert_eq!(e, Exit::Address);
    assert!((st_f64(&b, 0) - std::f64::consts::PI.atan2(1.0)).abs() < 1e-15);
    assert_eq!(b.cpu.fpu.top, 7);
    // fld1; fldl2e; fsincos  -> ST0 = cos(log2 e), ST1 = sin(log2 e)
    let (b, _) = run(&[0xd9, 0xe8, 0xd9, 0xea, 0xd9, 0xfb]);
    let x = std::f64::consts::LOG2_E;
    assert!((st_f64(&b, 0) - x.cos()).abs() < 1e-15 && (st_f64(&b, 1) - x.sin()).abs() < 1e-15);
    // fld1 (y); fldpi (x); fyl2x -> log2(pi)
    let (b, _) = run(&[0xd9, 0xe8, 0xd9, 0xeb, 0xd9, 0xf1]);
    assert!((st_f64(&b, 0) - std::f64::consts::PI.log2()).abs() < 1e-15);
    // fldpi; fxtract -> ST0 = pi/2, ST1 = 1
    let (b, _) = run(&[0xd9, 0xeb, 0xd9, 0xf4]);
    assert_eq!((st_f64(&b, 0), st_f64(&b, 1)), (std::f64::consts::PI / 2.0, 1.0));
    // fld1; fchs; f2xm1 -> 2^-1 - 1
    let (b, _) = run(&[0xd9, 0xe8, 0xd9, 0xe0, 0xd9, 0xf0]);
    assert_eq!(st_f64(&b, 0), -0.5);
    // fld1; fptan -> ST0 = 1, ST1 = tan 1
    let (b, _) = run(&[0xd9, 0xe8, 0xd9, 0xf2]);
    assert_eq!(st_f64(&b, 0), 1.0);
    assert!((st_f64(&b, 1) - 1f64.tan()).abs() < 1e-15);
}

#[test]
fn fcmov_and_fcomi_flags() {
    // fld1; fldz; fcomi st0, st1 (0 < 1: CF); fcmovb st0, st1
    let (b, _) = run(&[0xd9, 0xe8, 0xd9, 0xee, 0xdb, 0xf1, 0xda, 0xc1]);
    assert_eq!(b.reg_read("eflags").unwrap() as u32 & 0x8d5, 1);
    assert_eq!(st_f64(&b, 0), 1.0);
}
