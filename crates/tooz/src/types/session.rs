//! Connection state of a coordinator's session, as Curator's connection-state listeners.

use std::fmt;
use std::sync::Arc;

use tokio::sync::watch;

/// The state of the session between a coordinator and its backend.
///
/// A lock or leadership is unsafe from `Suspended` on: the backend may already have given it
/// to someone else. If the session is not back within the driver's session timeout, the core
/// reports it `Lost` and fires `lost()` on every lock and leadership held. Once the backend
/// answers again, the state is `Connected` anew: a new session, whose own failures are
/// reported the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectionState {
    /// Not started, or stopped.
    Disconnected,
    /// Connected; the session is healthy.
    Connected,
    /// The connection is down or the heartbeat failing; the session may still be alive.
    Suspended,
    /// Back after a suspension, with the same session: what was held is still held.
    Reconnected,
    /// The session is gone: every lock, leadership and ephemeral membership is lost.
    Lost,
}

/// Moves a coordinator's state to `state`, keeping the `tooz_coordinators` gauge (how many
/// coordinators are in each state, label `state`; stopped ones are not counted) in step.
pub(crate) fn set_state(tx: &watch::Sender<ConnectionState>, state: ConnectionState) {
    tx.send_if_modified(|current| {
        if *current == state {
            return false;
        }
        if *current != ConnectionState::Disconnected {
            metrics::gauge!("tooz_coordinators", "state" => current.name()).decrement(1.0);
        }
        if state != ConnectionState::Disconnected {
            metrics::gauge!("tooz_coordinators", "state" => state.name()).increment(1.0);
        }
        *current = state;
        true
    });
}

impl ConnectionState {
    /// The state's name in lower case, as metrics label it: `connected`, `suspended`, ...
    pub fn name(self) -> &'static str {
        match self {
            ConnectionState::Disconnected => "disconnected",
            ConnectionState::Connected => "connected",
            ConnectionState::Suspended => "suspended",
            ConnectionState::Reconnected => "reconnected",
            ConnectionState::Lost => "lost",
        }
    }

    /// True when operations can be expected to succeed.
    pub fn is_connected(self) -> bool {
        matches!(
            self,
            ConnectionState::Connected | ConnectionState::Reconnected
        )
    }
}

impl fmt::Display for ConnectionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Given to a driver at start: where it reports its connection state.
#[derive(Clone)]
pub struct SessionEvents {
    tx: Arc<watch::Sender<ConnectionState>>,
}

impl SessionEvents {
    pub(crate) fn new(tx: Arc<watch::Sender<ConnectionState>>) -> Self {
        SessionEvents { tx }
    }

    /// Reports a new state (repeats of the current state are ignored).
    pub fn report(&self, state: ConnectionState) {
        set_state(&self.tx, state);
    }

    /// The last state reported.
    pub fn current(&self) -> ConnectionState {
        *self.tx.borrow()
    }
}
