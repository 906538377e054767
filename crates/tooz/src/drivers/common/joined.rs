//! The groups one member joined, with the capabilities it joined with.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::driver::Driver;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::types::Capabilities;

/// The groups this member joined (to keep alive, or to join again after a session is lost).
#[derive(Default)]
pub(crate) struct JoinedGroups {
    groups: Mutex<BTreeMap<Id, Capabilities>>,
}

impl JoinedGroups {
    /// Records a join (or new capabilities).
    pub(crate) fn insert(&self, group: &Id, caps: &Capabilities) {
        self.groups
            .lock()
            .unwrap()
            .insert(group.clone(), caps.clone());
    }

    /// Updates the capabilities of a group already joined; `false` if it is not.
    pub(crate) fn update(&self, group: &Id, caps: &Capabilities) -> bool {
        match self.groups.lock().unwrap().get_mut(group) {
            Some(known) => {
                *known = caps.clone();
                true
            }
            None => false,
        }
    }

    /// Records a leave.
    pub(crate) fn remove(&self, group: &Id) {
        self.groups.lock().unwrap().remove(group);
    }

    /// The groups joined, with their capabilities.
    pub(crate) fn list(&self) -> Vec<(Id, Capabilities)> {
        let groups = self.groups.lock().unwrap();
        groups.iter().map(|(g, c)| (g.clone(), c.clone())).collect()
    }

    /// The names of the groups joined.
    pub(crate) fn names(&self) -> Vec<Id> {
        self.groups.lock().unwrap().keys().cloned().collect()
    }

    /// Forgets every group.
    pub(crate) fn clear(&self) {
        self.groups.lock().unwrap().clear();
    }
}

/// Joins `group` again as `member` with `caps`, creating the group first if it is gone: for a
/// member whose record a backend lost (a restart, an eviction, a failover that missed the
/// last writes). `false` if the member was still there.
pub(crate) async fn join_again<D: Driver + ?Sized>(
    driver: &D,
    group: &Id,
    member: &Id,
    caps: &Capabilities,
) -> Result<bool> {
    let mut joined = driver.join_group(group, member, caps).await;
    if matches!(joined, Err(Error::GroupNotCreated { .. })) {
        joined = match driver.create_group(group).await {
            Ok(()) | Err(Error::GroupAlreadyExist { .. }) => {
                driver.join_group(group, member, caps).await
            }
            Err(error) => Err(error),
        };
    }
    match joined {
        Ok(()) => Ok(true),
        Err(Error::MemberAlreadyExist { .. }) => Ok(false),
        Err(error) => Err(error),
    }
}
