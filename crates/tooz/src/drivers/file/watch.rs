//! Push for file-driver watchers: inotify on the group directory turns member files appearing
//! and disappearing into join and leave events, and a periodic re-read catches expiries (which
//! no file event announces) and a group directory deleted and created again.
//!
//! A member file is read when its event is handled; if it is already gone (a join and a leave
//! faster than the watcher), the core re-reads the group instead, so such a pair is coalesced.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use inotify::{EventMask, Inotify, WatchMask};
use tokio::sync::mpsc;

use crate::id::Id;
use crate::types::{GroupChange, GroupFeed};

fn mask() -> WatchMask {
    WatchMask::MOVED_TO
        | WatchMask::CLOSE_WRITE
        | WatchMask::DELETE
        | WatchMask::MOVED_FROM
        | WatchMask::DELETE_SELF
}

/// An inotify watch on one group directory.
pub(super) struct Watcher {
    inotify: Inotify,
    dir: PathBuf,
}

impl Watcher {
    /// Starts watching `dir`; `NotFound` if the group does not exist.
    pub(super) fn new(dir: &Path) -> io::Result<Self> {
        let inotify = Inotify::init()?;
        inotify.watches().add(dir, mask())?;
        Ok(Watcher {
            inotify,
            dir: dir.to_path_buf(),
        })
    }

    /// The feed; `known` maps member file names to member ids at the time of the snapshot.
    pub(super) fn feed(
        self,
        mut known: HashMap<String, Id>,
        resync_every: Duration,
    ) -> io::Result<GroupFeed> {
        let mut events = self.inotify.into_event_stream([0u8; 4096])?;
        let dir = self.dir;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(resync_every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut armed = true;
            loop {
                let change = tokio::select! {
                    _ = tx.closed() => return,
                    _ = tick.tick() => {
                        if !armed {
                            armed = events.watches().add(&dir, mask()).is_ok();
                        }
                        Some(GroupChange::Resync)
                    }
                    event = events.next(), if armed => match event {
                        Some(Ok(event)) => {
                            if event.mask.intersects(EventMask::DELETE_SELF | EventMask::IGNORED) {
                                armed = false;
                            }
                            let name = event.name.map(|n| n.to_string_lossy().into_owned());
                            interpret(&dir, &mut known, event.mask, name)
                        }
                        _ => {
                            armed = false;
                            Some(GroupChange::Resync)
                        }
                    },
                };
                if let Some(change) = change {
                    if tx.send(change).is_err() {
                        return;
                    }
                }
            }
        });
        Ok(tokio_stream::wrappers::UnboundedReceiverStream::new(rx).boxed())
    }
}

/// What one inotify event means for the membership.
fn interpret(
    dir: &Path,
    known: &mut HashMap<String, Id>,
    mask: EventMask,
    name: Option<String>,
) -> Option<GroupChange> {
    if mask.intersects(EventMask::Q_OVERFLOW | EventMask::DELETE_SELF | EventMask::IGNORED) {
        return Some(GroupChange::Resync);
    }
    let name = name.filter(|n| n.ends_with(".raw"))?;
    if mask.intersects(EventMask::MOVED_TO | EventMask::CLOSE_WRITE) {
        // Gone again already (or unreadable): only a re-read can tell the state.
        let Ok(Some((record, _))) = super::read_member_file(&dir.join(&name)) else {
            return Some(GroupChange::Resync);
        };
        known.insert(name, record.member.clone());
        return Some(GroupChange::Joined(record.member));
    }
    if mask.intersects(EventMask::DELETE | EventMask::MOVED_FROM) {
        return Some(match known.remove(&name) {
            Some(member) => GroupChange::Left(member),
            None => GroupChange::Resync,
        });
    }
    None
}
