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
