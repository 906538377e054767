//! The native half of the `tooz_rs` Python package: tooz-rs's coordinator, locks and
//! watchers as Python objects. The Python half (`python/tooz_rs`) wraps them in Python
//! tooz's own base classes, so `tooz.coordination.get_coordinator("rs+redis://…")` works.
//!
//! Every call that can wait releases the GIL; a panic becomes a `NativeError`, never an
//! abort; objects made before a `fork()` refuse to work in the child (see `runtime`).

mod coordinator;
mod errors;
mod lock;
mod runtime;

use pyo3::prelude::*;

/// The `tooz_rs._native` module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<coordinator::Coordinator>()?;
    m.add_class::<lock::Lock>()?;
    m.add("NativeError", m.py().get_type::<errors::NativeError>())?;
    m.add("DRIVERS", coordinator::available_drivers())?;
    m.add_function(wrap_pyfunction!(check_panic_boundary, m)?)?;
    Ok(())
}

/// Panics inside a call on purpose, to show that the panic reaches Python as a
/// `NativeError` (for the package's tests).
#[pyfunction]
fn check_panic_boundary(py: Python<'_>) -> PyResult<()> {
    runtime::run(py, async { panic!("a deliberate panic") })
}
