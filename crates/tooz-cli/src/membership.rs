//! Noticing that this process's membership of a group is gone: removed by another process
//! (`tooz group leave`), expired, or lost with the session.

use futures::StreamExt;
use tooz::{ConnectionState, Coordinator, GroupEvent, GroupWatch, Id};

use crate::exit::Failure;

/// A watch on one membership, set up while the member is known to be in the group.
pub struct Membership {
    coord: Coordinator,
    group: String,
    me: Id,
    events: GroupWatch,
}

impl Membership {
    /// Watches `coord`'s membership of `group`, which it has just joined; fails if it is
    /// already gone.
    pub async fn watch(coord: &Coordinator, group: &str) -> Result<Membership, Failure> {
        let events = coord.watch_group(group).await?;
        let me = coord.member_id().clone();
        let membership = Membership {
            coord: coord.clone(),
            group: group.to_string(),
            me,
            events,
        };
        // A removal before the watch began is not in the stream: look once.
        if !coord.get_members(group).await?.contains(&membership.me) {
            return Err(Failure::new(crate::exit::LOST, membership.removed()));
        }
        Ok(membership)
    }

    fn removed(&self) -> String {
        format!(
            "membership of {} lost: member {} was removed from the group (left by another \
             process, or expired)",
            self.group, self.me
        )
    }

    /// Resolves with a sentence when the membership is gone.
    pub async fn lost(mut self) -> String {
        let mut states = self.coord.connection_states();
        loop {
            tokio::select! {
                event = self.events.next() => match event {
                    Some(GroupEvent::Left { member, .. }) if member == self.me => {
                        return self.removed();
                    }
                    Some(_) => {}
                    None => {
                        return format!(
                            "membership of {} lost: the watch of the group ended",
                            self.group
                        );
                    }
                },
                _ = states.wait_for(|s| *s == ConnectionState::Lost) => {
                    return format!("membership of {} lost: the session was lost", self.group);
                }
            }
        }
    }
}
