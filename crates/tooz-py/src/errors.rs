//! tooz-rs errors as one Python exception, `NativeError(kind, message, group, member)`; the
//! Python half turns `kind` into the matching tooz exception class.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(
    _native,
    NativeError,
    PyException,
    "A tooz-rs error: args are (kind, message, group or None, member or None)."
);

/// The Python exception for a tooz-rs error.
pub fn to_py(error: tooz::Error) -> PyErr {
    use tooz::Error as E;
    let (kind, group, member) = match &error {
        E::NotImplemented { .. } => ("NotImplemented", None, None),
        E::Connection(_) => ("Connection", None, None),
        E::OperationTimedOut(_) => ("OperationTimedOut", None, None),
        E::LockAcquireFailed { .. } => ("LockAcquireFailed", None, None),
        E::GroupNotCreated { group } => ("GroupNotCreated", Some(group), None),
        E::GroupAlreadyExist { group } => ("GroupAlreadyExist", Some(group), None),
        E::MemberAlreadyExist { group, member } => {
            ("MemberAlreadyExist", Some(group), Some(member))
        }
        E::MemberNotJoined { group, member } => ("MemberNotJoined", Some(group), Some(member)),
        E::GroupNotEmpty { group } => ("GroupNotEmpty", Some(group), None),
        E::DriverChosenPoorly { .. } => ("DriverChosenPoorly", None, None),
        E::UnknownScheme { .. }
        | E::DriverUnavailable { .. }
        | E::InvalidUrl { .. }
        | E::UnknownOption { .. }
        | E::InvalidOption { .. }
        | E::InvalidName { .. } => ("InvalidArgument", None, None),
        _ => ("ToozError", None, None),
    };
    let bytes = |id: Option<&tooz::Id>| id.map(|id| id.as_bytes().to_vec());
    let (group, member) = (bytes(group), bytes(member));
    Python::attach(|py| {
        let group = group.map(|g| pyo3::types::PyBytes::new(py, &g).unbind());
        let member = member.map(|m| pyo3::types::PyBytes::new(py, &m).unbind());
        NativeError::new_err((kind, error.to_string(), group, member))
    })
}

/// The Python exception for a panic caught at the boundary.
pub fn panicked(payload: Box<dyn std::any::Any + Send>) -> PyErr {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    NativeError::new_err(("Panic", format!("tooz-rs panicked: {message}"), (), ()))
}
