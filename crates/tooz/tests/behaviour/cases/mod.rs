//! Every case, grouped as Python tooz's functional suite groups them, plus ours.

mod capabilities;
mod election;
mod groups;
mod lifecycle;
mod locks;
mod names;
mod partitioner;
mod watchers;

use crate::ctx::Case;

pub fn all() -> Vec<Case> {
    let mut all = Vec::new();
    for part in [
        lifecycle::cases(),
        groups::cases(),
        capabilities::cases(),
        watchers::cases(),
        election::cases(),
        locks::cases(),
        names::cases(),
        partitioner::cases(),
    ] {
        all.extend(part);
    }
    all
}
