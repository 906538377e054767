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
    Ok(())
}
