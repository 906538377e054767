//! `Coordinator`: one tooz-rs coordinator, with ids as bytes and capabilities as msgpack.

use std::time::{Duration, UNIX_EPOCH};

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use tooz::{Capabilities, GroupEvent, WatchId};

use crate::errors::to_py;
use crate::lock::Lock;
use crate::runtime::{run, wait, Owner};

/// The schemes (and aliases) of the drivers this build has.
pub fn available_drivers() -> Vec<&'static str> {
    let registry = tooz::drivers::registry();
    let available = registry.iter();
    available
        .filter(|d| d.availability == tooz::drivers::Availability::Available)
        .flat_map(|d| std::iter::once(d.scheme).chain(d.aliases.iter().copied()))
        .collect()
}

fn bytes(py: Python<'_>, data: &[u8]) -> Py<PyBytes> {
    PyBytes::new(py, data).unbind()
}

fn ids(py: Python<'_>, ids: impl IntoIterator<Item = tooz::Id>) -> Vec<Py<PyBytes>> {
    ids.into_iter().map(|id| bytes(py, id.as_bytes())).collect()
}

fn caps(msgpack: &[u8]) -> PyResult<Capabilities> {
    Capabilities::from_msgpack(msgpack).map_err(to_py)
}

fn seconds(value: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value.max(0.0)).map_err(|e| {
        crate::errors::NativeError::new_err(("InvalidArgument", format!("{value} s: {e}"), (), ()))
    })
}

/// An event for Python: `(kind, group, member)`, kind being `join`, `leave` or `elected`.
type WatchEvent = (&'static str, Py<PyBytes>, Py<PyBytes>);

/// A tooz-rs coordinator (not started until `start`).
#[pyclass(module = "tooz_rs._native", frozen)]
pub struct Coordinator {
    inner: Option<tooz::Coordinator>,
    owner: Owner,
}

impl Coordinator {
    fn get(&self) -> PyResult<&tooz::Coordinator> {
        self.owner.check()?;
        Ok(self.inner.as_ref().expect("set until dropped"))
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        if !self.owner.is_here() {
            std::mem::forget(self.inner.take());
        }
    }
}

#[pymethods]
impl Coordinator {
    /// Parses `url` and picks its driver (no I/O). With `manual_heartbeat`, the caller
    /// keeps the session alive with `heartbeat()`, as Python tooz expects.
    #[new]
    #[pyo3(signature = (url, member_id, manual_heartbeat = true))]
    fn new(py: Python<'_>, url: &str, member_id: &[u8], manual_heartbeat: bool) -> PyResult<Self> {
        let mut builder = tooz::Coordinator::builder(url, member_id);
        if manual_heartbeat {
            builder = builder.manual_heartbeat();
        }
        let inner = run(py, builder.connect())?;
        Ok(Coordinator {
            inner: Some(inner),
            owner: Owner::here(),
        })
    }

    /// The driver's scheme.
    fn driver_name(&self) -> PyResult<&'static str> {
        Ok(self.get()?.driver_name())
    }

    /// tooz's names of the characteristics the driver declares.
    fn characteristics(&self) -> PyResult<Vec<&'static str>> {
        Ok(self
            .get()?
            .characteristics()
            .iter()
            .map(|c| c.name())
            .collect())
    }

    /// Which API parts the driver supports, as `(part, supported)` pairs.
    fn support(&self) -> PyResult<Vec<(&'static str, bool)>> {
        Ok(self.get()?.support().entries().to_vec())
    }

    /// `connected`, `suspended`, `reconnected`, `lost` or `disconnected`.
    fn connection_state(&self) -> PyResult<String> {
        Ok(format!("{:?}", self.get()?.connection_state()).to_lowercase())
    }

    fn is_started(&self) -> PyResult<bool> {
        Ok(self.get()?.is_started())
    }

    fn start(&self, py: Python<'_>) -> PyResult<()> {
        let c = self.get()?;
        run(py, c.start())
    }

    fn stop(&self, py: Python<'_>) -> PyResult<()> {
        let c = self.get()?;
        run(py, c.stop())
    }

    /// Beats once; the longest wait in seconds before the next beat, if one is needed.
    fn heartbeat(&self, py: Python<'_>) -> PyResult<Option<f64>> {
        let c = self.get()?;
        Ok(run(py, c.heartbeat())?.map(|d| d.as_secs_f64()))
    }

    fn create_group(&self, py: Python<'_>, group: &[u8]) -> PyResult<()> {
        let c = self.get()?;
        run(py, c.create_group(group))
    }

    fn delete_group(&self, py: Python<'_>, group: &[u8]) -> PyResult<()> {
        let c = self.get()?;
        run(py, c.delete_group(group))
    }

    fn get_groups(&self, py: Python<'_>) -> PyResult<Vec<Py<PyBytes>>> {
        let c = self.get()?;
        Ok(ids(py, run(py, c.get_groups())?))
    }

    /// Joins `group` with capabilities given as msgpack bytes.
    fn join_group(&self, py: Python<'_>, group: &[u8], capabilities: &[u8]) -> PyResult<()> {
        let (c, caps) = (self.get()?, caps(capabilities)?);
        run(py, c.join_group(group, caps))
    }

    fn leave_group(&self, py: Python<'_>, group: &[u8]) -> PyResult<()> {
        let c = self.get()?;
        run(py, c.leave_group(group))
    }

    fn get_members(&self, py: Python<'_>, group: &[u8]) -> PyResult<Vec<Py<PyBytes>>> {
        let c = self.get()?;
        Ok(ids(py, run(py, c.get_members(group))?))
    }

    /// A member's capabilities, as msgpack bytes.
    fn get_member_capabilities(
        &self,
        py: Python<'_>,
        group: &[u8],
        member: &[u8],
    ) -> PyResult<Py<PyBytes>> {
        let c = self.get()?;
        let found = run(py, c.get_member_capabilities(group, member))?;
        Ok(bytes(py, &found.to_msgpack()))
    }

    /// `(member, capabilities as msgpack)` for every member of `group`.
    fn get_members_with_capabilities(
        &self,
        py: Python<'_>,
        group: &[u8],
    ) -> PyResult<Vec<(Py<PyBytes>, Py<PyBytes>)>> {
        let c = self.get()?;
        let found = run(py, c.get_members_with_capabilities(group))?;
        let pairs = found.into_iter();
        Ok(pairs
            .map(|(m, caps)| (bytes(py, m.as_bytes()), bytes(py, &caps.to_msgpack())))
            .collect())
    }

    /// `(capabilities as msgpack, joined at as Unix seconds or None)`.
    fn get_member_info(
        &self,
        py: Python<'_>,
        group: &[u8],
        member: &[u8],
    ) -> PyResult<(Py<PyBytes>, Option<f64>)> {
        let c = self.get()?;
        let info = run(py, c.get_member_info(group, member))?;
        let joined = info
            .joined_at
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok());
        let caps = bytes(py, &info.capabilities.to_msgpack());
        Ok((caps, joined.map(|d| d.as_secs_f64())))
    }

    fn update_capabilities(
        &self,
        py: Python<'_>,
        group: &[u8],
        capabilities: &[u8],
    ) -> PyResult<()> {
        let (c, caps) = (self.get()?, caps(capabilities)?);
        run(py, c.update_capabilities(group, caps))
    }

    /// Starts watching `group` for `kind` (`join`, `leave` or `elected`); the watch's id.
    fn watch(&self, py: Python<'_>, kind: &str, group: &[u8]) -> PyResult<u64> {
        let c = self.get()?;
        let id = match kind {
            "join" => run(py, c.watch_join_group(group, |_| {}))?,
            "leave" => run(py, c.watch_leave_group(group, |_| {}))?,
            "elected" => run(py, c.watch_elected_as_leader(group, |_| {}))?,
            other => return Err(bad_kind(other)),
        };
        Ok(id.raw())
    }

    /// Stops the watch `id` of `kind` on `group`.
    fn unwatch(&self, kind: &str, group: &[u8], id: u64) -> PyResult<()> {
        let c = self.get()?;
        let id = WatchId::from_raw(id);
        match kind {
            "join" => c.unwatch_join_group(group, id),
            "leave" => c.unwatch_leave_group(group, id),
            "elected" => c.unwatch_elected_as_leader(group, id),
            other => return Err(bad_kind(other)),
        }
        .map_err(to_py)
    }

    /// The events since the last call, as `(kind, group, member)`, waiting up to `timeout`
    /// seconds for one (with none, elections whose seat is free are settled first).
    #[pyo3(signature = (timeout = None))]
    fn run_watchers(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Vec<WatchEvent>> {
        let c = self.get()?;
        let timeout = timeout.map(seconds).transpose()?;
        let events = wait(py, c.run_watchers(timeout))?;
        Ok(events
            .into_iter()
            .map(|event| {
                let kind = match &event {
                    GroupEvent::Joined { .. } => "join",
                    GroupEvent::Left { .. } => "leave",
                    GroupEvent::LeaderElected { .. } => "elected",
                };
                (
                    kind,
                    bytes(py, event.group().as_bytes()),
                    bytes(py, event.member().as_bytes()),
                )
            })
            .collect())
    }

    fn get_leader(&self, py: Python<'_>, group: &[u8]) -> PyResult<Option<Py<PyBytes>>> {
        let c = self.get()?;
        let leader = run(py, c.get_leader(group))?;
        Ok(leader.map(|id| bytes(py, id.as_bytes())))
    }

    fn stand_down_group_leader(&self, py: Python<'_>, group: &[u8]) -> PyResult<bool> {
        let c = self.get()?;
        run(py, c.stand_down_group_leader(group))
    }

    /// The lock `name` (a new lock object: two objects exclude each other).
    fn lock(&self, name: &[u8]) -> PyResult<Lock> {
        Ok(Lock::new(self.get()?.lock(name), self.owner))
    }
}

fn bad_kind(kind: &str) -> PyErr {
    let message = format!("watch kind {kind:?}: expected join, leave or elected");
    crate::errors::NativeError::new_err(("InvalidArgument", message, (), ()))
}
