//! Run one of the interpreter workloads on the bare CPU, for instruction-count
//! profiling: `valgrind --tool=callgrind target/release/examples/workload crc32`.
//! The byte programs are the same as benches/programs.py.

use _core::bare::BareCpu;
use _core::cpu::state::Exit;

const CODE: u64 = 0x0010_0000;
const DATA: u64 = 0x0020_0000;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn main() {
    let which = std::env::args().nth(1).unwrap_or_else(|| "crc32".into());
    if let Some(kind) = which.strip_prefix("host:") {
        let n: u32 = std::env::args().nth(2).and_then(|v| v.parse().ok()).unwrap_or(1000);
        let (insns, ns, ops) = _core::host_bench::run(kind, n).expect("known kind").expect("bench guest runs");
        println!("{kind}: {ops} operations, {insns} guest instructions, {:.1} ns/op", ns as f64 / ops as f64);
        return;
    }
    // An optional repeat count: longer runs give steadier wall-clock rates
    // (callgrind counts are steady either way).
    let reps: u32 = std::env::args().nth(2).and_then(|v| v.parse().ok()).unwrap_or(1);
    let mut b = BareCpu::new();
    b.mem_map(CODE, 0x1000).unwrap();
    b.mem_map(DATA, 0x40000).unwrap();
    b.mem_map(0x2ff000, 0x1000).unwrap();
    let mut total = std::time::Duration::ZERO;
    for rep in 0..reps {
        b.reg_write("esp", 0x300000).unwrap();
        match which.as_str() {
            "crc32" => {
                if rep == 0 {
                    b.mem_write(CODE, &hex("0fb61631d0bb08000000d1e87305352083b8ed4b75f4464975e6f4")).unwrap();
                }
                let data: Vec<u8> = (0..65536u32).map(|i| (i * 7 + 3) as u8).collect();
                b.mem_write(DATA, &data).unwrap();
                b.reg_write("eax", 0xffff_ffff).unwrap();
                b.reg_write("esi", DATA as u128).unwrap();
                b.reg_write("ecx", 65536).unwrap();
            }
            "sort" => {
                if rep == 0 {
                    b.mem_write(CODE, &hex("ba0000000089f789cb4b8b078b6f0439e87e0a892f894704ba0100000083c7044b75e785d275d9f4")).unwrap();
                }
                let n = 600u32;
                let data: Vec<u8> = (0..n).flat_map(|i| (((i.wrapping_mul(2654435761)) & 0xffff) as i32 - 0x8000).to_le_bytes()).collect();
                b.mem_write(DATA, &data).unwrap();
                b.reg_write("esi", DATA as u128).unwrap();
                b.reg_write("ecx", n as u128).unwrap();
            }
            other => panic!("unknown workload {other}"),
        }
        let t = std::time::Instant::now();
        let e = b.run(Some(CODE as u32), 0, None);
        total += t.elapsed();
        assert_eq!(e, Exit::Hlt, "{e:?}");
    }
    let dt = total;
    let n = b.cpu.icount;
    println!("{which}: {n} instructions in {dt:?}: {:.1} MIPS", n as f64 / dt.as_secs_f64() / 1e6);
}
