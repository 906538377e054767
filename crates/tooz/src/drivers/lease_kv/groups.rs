//! Groups and members on Python tooz's keys (see `layout`), and pushed watches.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

use super::store::{Compare, Event, KeyRange, Kv, KvStore, Op, Read};
use super::LeaseKvDriver;
use crate::drivers::common::errors::{
    group_already_exist, group_not_created, group_not_empty, member_already_exist,
    member_not_joined,
};
use crate::error::Result;
use crate::id::Id;
use crate::types::{Capabilities, GroupChange, GroupFeed, MemberInfo};

fn caps_of(value: &[u8]) -> Result<Capabilities> {
    if value.is_empty() {
        Ok(Capabilities::none())
    } else {
        Capabilities::from_msgpack(value)
    }
}

pub(super) async fn create<S: KvStore>(driver: &LeaseKvDriver<S>, group: &Id) -> Result<()> {
    let key = driver.layout.group(group);
    let txn = driver
        .store
        .txn(
            vec![Compare::absent(KeyRange::key(key.clone()))],
            vec![Op::Put {
                key: key.clone(),
                value: key,
                lease: 0,
            }],
            vec![],
        )
        .await?;
    if txn.succeeded {
        Ok(())
    } else {
        Err(group_already_exist(group))
    }
}

pub(super) async fn delete<S: KvStore>(driver: &LeaseKvDriver<S>, group: &Id) -> Result<()> {
    let key = driver.layout.group(group);
    let txn = driver
        .store
        .txn(
            vec![
                Compare::exists(key.clone()),
                Compare::absent(KeyRange::below(&key)),
            ],
            vec![Op::Delete(KeyRange::key(key.clone()))],
            vec![Op::Get(Read::all(KeyRange::key(key)))],
        )
        .await?;
    match (txn.succeeded, txn.got(0).is_empty()) {
        (true, _) => Ok(()),
        (false, true) => Err(group_not_created(group)),
        (false, false) => Err(group_not_empty(group)),
    }
}

pub(super) async fn list<S: KvStore>(driver: &LeaseKvDriver<S>) -> Result<BTreeSet<Id>> {
    let (kvs, _) = driver
        .store
        .range(Read {
            keys_only: true,
            ..Read::all(KeyRange::prefix(driver.layout.groups()))
        })
        .await?;
    Ok(kvs
        .iter()
        .filter_map(|kv| driver.layout.group_of_key(&kv.key, kv.lease))
        .collect())
}

pub(super) async fn join<S: KvStore>(
    driver: &LeaseKvDriver<S>,
    group: &Id,
    member: &Id,
    caps: &Capabilities,
) -> Result<()> {
    let lease = driver.lease()?;
    let gkey = driver.layout.group(group);
    let mkey = driver.layout.member(group, member);
    let txn = driver
        .store
        .txn(
            vec![
                Compare::exists(gkey.clone()),
                Compare::absent(KeyRange::key(mkey.clone())),
            ],
            vec![Op::Put {
                key: mkey,
                value: caps.to_msgpack(),
                lease,
            }],
            vec![Op::Get(Read::all(KeyRange::key(gkey)))],
        )
        .await?;
    match (txn.succeeded, txn.got(0).is_empty()) {
        (true, _) => Ok(()),
        (false, true) => Err(group_not_created(group)),
        (false, false) => Err(member_already_exist(group, member)),
    }
}

pub(super) async fn leave<S: KvStore>(
    driver: &LeaseKvDriver<S>,
    group: &Id,
    member: &Id,
) -> Result<()> {
    let gkey = driver.layout.group(group);
    let mkey = driver.layout.member(group, member);
    let txn = driver
        .store
        .txn(
            vec![Compare::exists(mkey.clone())],
            vec![Op::Delete(KeyRange::key(mkey))],
            vec![Op::Get(Read::all(KeyRange::key(gkey)))],
        )
        .await?;
    match (txn.succeeded, txn.got(0).is_empty()) {
        (true, _) => Ok(()),
        (false, true) => Err(group_not_created(group)),
        (false, false) => Err(member_not_joined(group, member)),
    }
}

/// The members among the keys of a group's range: keys on a lease, but for those of a group
/// nested in it (`<G>/<sub>/...`, a Python tooz group named with a slash).
fn members_of<S: KvStore>(driver: &LeaseKvDriver<S>, group: &Id, kvs: &[Kv]) -> Vec<(Id, Kv)> {
    let prefix = driver.layout.group(group);
    let nested: Vec<&[u8]> = kvs
        .iter()
        .filter(|kv| kv.lease == 0 && kv.key.len() > prefix.len())
        .map(|kv| &kv.key[prefix.len()..])
        .collect();
    kvs.iter()
        .filter(|kv| kv.lease != 0 && kv.key.len() > prefix.len())
        .filter_map(|kv| {
            let name = &kv.key[prefix.len()..];
            (!nested.iter().any(|n| name.starts_with(n)))
                .then(|| (Id::from(name.to_vec()), kv.clone()))
        })
        .collect()
}

/// The group's keys and the revision of the read; `GroupNotCreated` if it does not exist.
async fn read_group<S: KvStore>(
    driver: &LeaseKvDriver<S>,
    group: &Id,
    keys_only: bool,
) -> Result<(Vec<(Id, Kv)>, i64)> {
    let gkey = driver.layout.group(group);
    let (kvs, revision) = driver
        .store
        .range(Read {
            keys_only,
            ..Read::all(KeyRange::prefix(gkey.clone()))
        })
        .await?;
    if !kvs.iter().any(|kv| kv.key == gkey) {
        return Err(group_not_created(group));
    }
    Ok((members_of(driver, group, &kvs), revision))
}

/// The group's member ids (keys only: no capabilities travel).
pub(super) async fn member_ids<S: KvStore>(
    driver: &LeaseKvDriver<S>,
    group: &Id,
) -> Result<BTreeSet<Id>> {
    let (members, _) = read_group(driver, group, true).await?;
    Ok(members.into_iter().map(|(id, _)| id).collect())
}

pub(super) async fn members<S: KvStore>(
    driver: &LeaseKvDriver<S>,
    group: &Id,
) -> Result<BTreeMap<Id, Capabilities>> {
    let (members, _) = read_group(driver, group, false).await?;
    members
        .into_iter()
        .map(|(id, kv)| Ok((id, caps_of(&kv.value)?)))
        .collect()
}

pub(super) async fn member_info<S: KvStore>(
    driver: &LeaseKvDriver<S>,
    group: &Id,
    member: &Id,
) -> Result<MemberInfo> {
    let gkey = driver.layout.group(group);
    let mkey = driver.layout.member(group, member);
    let txn = driver
        .store
        .txn(
            vec![],
            vec![
                Op::Get(Read::all(KeyRange::key(gkey))),
                Op::Get(Read::all(KeyRange::key(mkey))),
            ],
            vec![],
        )
        .await?;
    let Some(kv) = txn.got(1).first() else {
        return Err(if txn.got(0).is_empty() {
            group_not_created(group)
        } else {
            member_not_joined(group, member)
        });
    };
    let mut extra = BTreeMap::new();
    extra.insert("lease".to_string(), rmpv::Value::from(kv.lease));
    extra.insert(
        "create_revision".to_string(),
        rmpv::Value::from(kv.create_revision),
    );
    Ok(MemberInfo {
        capabilities: caps_of(&kv.value)?,
        joined_at: None,
        extra,
    })
}

pub(super) async fn update<S: KvStore>(
    driver: &LeaseKvDriver<S>,
    group: &Id,
    member: &Id,
    caps: &Capabilities,
) -> Result<()> {
    let gkey = driver.layout.group(group);
    let mkey = driver.layout.member(group, member);
    // The member key keeps its lease: only its own session may rewrite it on another.
    let (kvs, _) = driver
        .store
        .range(Read::all(KeyRange::key(mkey.clone())))
        .await?;
    let Some(current) = kvs.first() else {
        let (group_kvs, _) = driver.store.range(Read::all(KeyRange::key(gkey))).await?;
        return Err(if group_kvs.is_empty() {
            group_not_created(group)
        } else {
            member_not_joined(group, member)
        });
    };
    let txn = driver
        .store
        .txn(
            vec![Compare::created_at(mkey.clone(), current.create_revision)],
            vec![Op::Put {
                key: mkey,
                value: caps.to_msgpack(),
                lease: current.lease,
            }],
            vec![],
        )
        .await?;
    if txn.succeeded {
        Ok(())
    } else {
        Err(member_not_joined(group, member))
    }
}

/// How long a broken watch waits before it is opened again.
const REWATCH_DELAY: Duration = Duration::from_millis(100);

/// The group's members now, and a feed of its changes from that read on.
pub(super) async fn subscribe<S: KvStore>(
    driver: &LeaseKvDriver<S>,
    group: &Id,
) -> Result<(BTreeSet<Id>, GroupFeed)> {
    let (members, revision) = read_group(driver, group, true).await?;
    let snapshot = members.into_iter().map(|(id, _)| id).collect();
    let store = driver.store.clone();
    let prefix = driver.layout.group(group);
    let (tx, rx) = mpsc::unbounded_channel();
    let events = store
        .watch(KeyRange::prefix(prefix.clone()), revision + 1)
        .await?;
    tokio::spawn(follow(store, prefix, events, tx));
    Ok((snapshot, UnboundedReceiverStream::new(rx).boxed()))
}

/// Turns watch events into group changes until the feed's reader goes away; a broken watch
/// is opened again from a fresh revision, with a `Resync` so the reader diffs.
async fn follow<S: KvStore>(
    store: std::sync::Arc<S>,
    prefix: Vec<u8>,
    mut events: super::store::WatchStream,
    tx: mpsc::UnboundedSender<GroupChange>,
) {
    loop {
        let batch = tokio::select! {
            batch = events.next() => batch,
            () = tx.closed() => return,
        };
        match batch {
            Some(Ok(batch)) => {
                for event in batch {
                    let change = match event {
                        Event::Put(kv)
                            if kv.lease != 0 && kv.create_revision == kv.mod_revision =>
                        {
                            GroupChange::Joined(Id::from(kv.key[prefix.len()..].to_vec()))
                        }
                        Event::Put(_) => continue,
                        Event::Delete(kv) if kv.key.len() > prefix.len() => {
                            GroupChange::Left(Id::from(kv.key[prefix.len()..].to_vec()))
                        }
                        Event::Delete(_) => GroupChange::Resync,
                    };
                    if tx.send(change).is_err() {
                        return;
                    }
                }
            }
            Some(Err(_)) | None => {
                // Broken: open it again from now on, and have the reader diff.
                loop {
                    tokio::select! {
                        () = tokio::time::sleep(REWATCH_DELAY) => {}
                        () = tx.closed() => return,
                    }
                    let reopened = async {
                        let (_, revision) = store
                            .range(Read {
                                limit: 1,
                                keys_only: true,
                                ..Read::all(KeyRange::key(prefix.clone()))
                            })
                            .await?;
                        store
                            .watch(KeyRange::prefix(prefix.clone()), revision + 1)
                            .await
                    };
                    if let Ok(stream) = reopened.await {
                        events = stream;
                        break;
                    }
                }
                if tx.send(GroupChange::Resync).is_err() {
                    return;
                }
            }
        }
    }
}
