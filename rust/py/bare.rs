//! Python classes `Cpu` and `Exit` over `crate::bare::BareCpu`.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::bare::BareCpu;
use crate::cpu::state::Exit as CoreExit;

#[pyclass(module = "lguest._core", name = "Exit", frozen, get_all)]
pub struct Exit {
    kind: &'static str,
    vector: Option<u32>,
    error_code: Option<u32>,
    address: Option<u32>,
    instructions: u64,
}

#[pymethods]
impl Exit {
    fn __repr__(&self) -> String {
        let mut s = format!("Exit(kind={:?}", self.kind);
        if let Some(v) = self.vector {
            s += &format!(", vector={v}");
        }
        if let Some(e) = self.error_code {
            s += &format!(", error_code={e:#x}");
        }
        if let Some(a) = self.address {
            s += &format!(", address={a:#x}");
        }
        s + &format!(", instructions={})", self.instructions)
    }
}

#[pyclass(module = "lguest._core", name = "Cpu", unsendable)]
pub struct Cpu {
    inner: BareCpu,
}

fn value_error(e: crate::errors::BareError) -> PyErr {
    PyValueError::new_err(e.to_string())
}

#[pymethods]
impl Cpu {
    #[new]
    fn new() -> Self {
        Cpu { inner: BareCpu::new() }
    }

    fn mem_map(&mut self, addr: u64, size: u64) -> PyResult<()> {
        self.inner.mem_map(addr, size).map_err(value_error)
    }

    fn mem_write(&mut self, addr: u64, data: Vec<u8>) -> PyResult<()> {
        self.inner.mem_write(addr, &data).map_err(value_error)
    }

    fn mem_read<'py>(&self, py: Python<'py>, addr: u64, size: usize) -> PyResult<Bound<'py, PyBytes>> {
        let v = self.inner.mem_read(addr, size).map_err(value_error)?;
        Ok(PyBytes::new(py, &v))
    }

    fn reg_write(&mut self, name: &str, value: u128) -> PyResult<()> {
        self.inner.reg_write(name, value).map_err(value_error)
    }

    fn reg_read(&self, name: &str) -> PyResult<u128> {
        self.inner.reg_read(name).map_err(value_error)
    }

    #[pyo3(signature = (start=None, count=0, until=None))]
    fn run(&mut self, start: Option<u32>, count: u64, until: Option<u32>) -> PyResult<Exit> {
        let before = self.inner.cpu.icount;
        let inner = &mut self.inner;
        let e = super::guard("Cpu.run", || Ok(inner.run(start, count, until)))?;
        let instructions = self.inner.cpu.icount - before;
        let mut out = Exit { kind: "count", vector: None, error_code: None, address: None, instructions };
        match e {
            CoreExit::Count | CoreExit::Event => {}
            CoreExit::Address => out.kind = "address",
            CoreExit::Hlt => out.kind = "hlt",
            CoreExit::Int(v) => {
                out.kind = "interrupt";
                out.vector = Some(v as u32);
            }
            CoreExit::Fault(f) => {
                out.kind = "exception";
                out.vector = Some(f.vector as u32);
                out.error_code = f.error;
                if f.vector == 14 {
                    out.address = Some(f.addr);
                }
            }
        }
        Ok(out)
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Exit>()?;
    m.add_class::<Cpu>()?;
    Ok(())
}
