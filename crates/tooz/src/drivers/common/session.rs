//! The started session of a driver, and the error a call gets before `start`.

use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

/// Holds a driver's session (connections, background tasks) between `start` and `stop`.
pub(crate) struct SessionSlot<S> {
    driver: &'static str,
    session: Mutex<Option<Arc<S>>>,
}

impl<S> SessionSlot<S> {
    /// An empty slot of `driver`.
    pub(crate) fn new(driver: &'static str) -> Self {
        SessionSlot {
            driver,
            session: Mutex::new(None),
        }
    }

    /// The session; a [`Error::Connection`] naming the driver when it is not started.
    pub(crate) fn get(&self) -> Result<Arc<S>> {
        self.session
            .lock()
            .unwrap()
            .clone()
            .ok_or_else(|| Error::Connection(format!("the {} driver is not started", self.driver)))
    }

    /// Installs `session`, returning the one it replaces.
    pub(crate) fn set(&self, session: Arc<S>) -> Option<Arc<S>> {
        self.session.lock().unwrap().replace(session)
    }

    /// Empties the slot, returning the session.
    pub(crate) fn take(&self) -> Option<Arc<S>> {
        self.session.lock().unwrap().take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_before_start_names_the_driver() {
        let slot: SessionSlot<u8> = SessionSlot::new("demo");
        let error = slot.get().unwrap_err();
        assert!(matches!(&error, Error::Connection(m) if m.contains("demo driver is not started")));
        slot.set(Arc::new(7));
        assert_eq!(*slot.get().unwrap(), 7);
        assert!(slot.take().is_some());
        assert!(slot.get().is_err());
    }
}
