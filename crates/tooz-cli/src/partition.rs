//! `tooz partition GROUP KEY`: who owns KEY among the group's current members.

use std::collections::BTreeMap;

use serde_json::json;
use tooz::partitioner::{member_weight, PartitionView, DEFAULT_PARTITIONS};
use tooz::{Capabilities, Id};

use crate::cli::{Global, PartitionArgs};
use crate::connect;
use crate::exit::Outcome;
use crate::names;
use crate::output;

/// Runs `tooz partition`.
pub async fn run(global: &Global, args: &PartitionArgs) -> Outcome {
    let Some(coord) = connect::reader(global).await? else {
        return Err(connect::no_such_group(&args.group));
    };
    let members = coord
        .get_members_with_capabilities(args.group.as_str())
        .await;
    connect::stop(&coord).await;
    let members = members?;
    let placement = place(&members, &args.key, &args.ignore, args.replicas as usize);
    if global.json {
        let weights: Vec<_> = members
            .iter()
            .map(|(id, caps)| json!({ "member": names::json(id), "weight": member_weight(caps) }))
            .collect();
        let owners: Vec<_> = placement.owners.iter().map(names::json).collect();
        output::json(&json!({
            "group": args.group,
            "key": args.key,
            "replicas": args.replicas,
            "members": weights,
            "primary": placement.primary.as_ref().map(names::json),
            "owners": owners,
        }))?;
    } else {
        names::print_lines(&placement.owners)?;
    }
    Ok(0)
}

/// Where a key goes.
#[derive(Debug, PartialEq, Eq)]
pub struct Placement {
    /// The first owner clockwise from the key that is not ignored.
    pub primary: Option<Id>,
    /// The owners: the primary first, then the other replicas by name.
    pub owners: Vec<Id>,
}

/// Places `key` on the ring of `members`, as tooz's partitioner does.
pub fn place(
    members: &BTreeMap<Id, Capabilities>,
    key: &str,
    ignore: &[String],
    replicas: usize,
) -> Placement {
    let view = PartitionView::from_members(members, DEFAULT_PARTITIONS, Id::default());
    let ignore: Vec<Id> = ignore.iter().map(Id::from).collect();
    let key = key.to_string();
    // The first owner clockwise that is not ignored, then the other replicas by name.
    let primary = view.members_for_object(&key, &ignore, 1).into_iter().next();
    let mut list: Vec<Id> = primary.iter().cloned().collect();
    list.extend(
        view.members_for_object(&key, &ignore, replicas)
            .into_iter()
            .filter(|o| Some(o) != primary.as_ref()),
    );
    Placement {
        primary,
        owners: list,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tooz::hashring::HashRing;
    use tooz::Value;

    fn members(list: &[(&str, u32)]) -> BTreeMap<Id, Capabilities> {
        list.iter()
            .map(|(name, w)| {
                let caps = Value::Map(vec![(Value::from("weight"), Value::from(*w))]);
                (Id::from(*name), Capabilities::from(caps))
            })
            .collect()
    }

    #[test]
    fn placement_matches_the_ring() {
        let group = members(&[("node1", 1), ("node2", 1), ("node3", 1)]);
        let ring = HashRing::new(["node1", "node2", "node3"]);
        let one = place(&group, "foo", &[], 1);
        assert_eq!(one.owners, vec![Id::from("node2")]);
        assert_eq!(one.primary, Some(Id::from("node2")));
        assert_eq!(ring.get_node(b"foo"), Some(&b"node2"[..]));
        let two = place(&group, "foo", &[], 2);
        assert_eq!(two.owners, vec![Id::from("node2"), Id::from("node3")]);
        let ignored = place(&group, "foo", &["node2".to_string()], 1);
        let expected = ring.get_nodes(b"foo", ["node2"], 1).unwrap();
        assert_eq!(ignored.owners.len(), 1);
        assert!(expected.contains(ignored.owners[0].as_bytes()));
        assert_eq!(ignored.primary.as_ref(), Some(&ignored.owners[0]));
        assert!(place(&BTreeMap::new(), "foo", &[], 1).owners.is_empty());
    }

    #[test]
    fn weights_default_to_one() {
        assert_eq!(member_weight(&Capabilities::none()), 1);
        assert_eq!(member_weight(&Capabilities::from("text")), 1);
        assert_eq!(member_weight(&members(&[("a", 3)])[&Id::from("a")]), 3);
    }
}
