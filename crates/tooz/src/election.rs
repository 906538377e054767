//! Leader election: a lock per group, named as Python tooz names it on each backend.

use std::fmt;

use crate::error::Result;
use crate::id::Id;
use crate::lock::LockGuard;
use crate::types::{FencingToken, LostReason};

/// Leadership of a group, from [`Coordinator::campaign`](crate::Coordinator::campaign).
///
/// Held until [`Leadership::resign`], the coordinator stops, or it is lost (session lost,
/// leader lock broken, `stand_down_group_leader`): [`Leadership::lost`] resolves then.
/// Dropping it resigns in the background.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let coord = tooz::Coordinator::connect("zake://", "node-1").await?;
/// coord.start().await?;
/// let leadership = coord.campaign("scheduler").await?;
/// assert_eq!(coord.get_leader("scheduler").await?, Some("node-1".into()));
/// leadership.resign().await?;
/// assert_eq!(coord.get_leader("scheduler").await?, None);
/// # coord.stop().await?; Ok::<(), tooz::Error>(()) }).unwrap();
/// ```
pub struct Leadership {
    group: Id,
    guard: LockGuard,
}

impl Leadership {
    pub(crate) fn new(group: Id, guard: LockGuard) -> Self {
        metrics::counter!("tooz_elections_won_total").increment(1);
        Leadership { group, guard }
    }

    /// The group led.
    pub fn group(&self) -> &Id {
        &self.group
    }

    /// The term: the fencing token of the leader lock, larger for every new leader.
    pub fn term(&self) -> FencingToken {
        self.guard.fencing_token()
    }

    /// The leader lock's lease, where it expires unless refreshed: see [`LockGuard::lease`].
    pub fn lease(&self) -> Option<std::time::Duration> {
        self.guard.lease()
    }

    /// When the leader lock was last confirmed: see [`LockGuard::confirmed_at`].
    pub fn confirmed_at(&self) -> tokio::time::Instant {
        self.guard.confirmed_at()
    }

    /// Resolves when the leadership is lost.
    pub async fn lost(&self) -> LostReason {
        self.guard.lost().await
    }

    /// Why the leadership was lost, if it was.
    pub fn lost_reason(&self) -> Option<LostReason> {
        self.guard.lost_reason()
    }

    /// Gives the leadership up; `false` if it was already lost.
    pub async fn resign(self) -> Result<bool> {
        self.guard.release().await
    }
}

impl fmt::Debug for Leadership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Leadership")
            .field("group", &self.group)
            .field("term", &self.term())
            .field("lost", &self.lost_reason())
            .finish()
    }
}
