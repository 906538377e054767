//! The consistent hash ring, placing keys as Python tooz does.

use tooz::hashring::HashRing;

fn main() -> tooz::Result<()> {
    let mut ring = HashRing::new(["node1", "node2", "node3"]);
    let owners = ring.get_nodes(b"foo", &[] as &[&str], 2)?;
    println!(
        "foo -> {:?}",
        owners
            .iter()
            .map(|n| String::from_utf8_lossy(n))
            .collect::<Vec<_>>()
    );
    ring.add_node("node4", 2);
    ring.remove_node("node1")?;
    println!(
        "{} points, foo now on {:?}",
        ring.len(),
        ring.get_node(b"foo").map(String::from_utf8_lossy)
    );
    Ok(())
}
