//! The SQL drivers' membership reads at scale: `cargo bench -p tooz --features
//! postgresql,mysql --bench sql`.
//!
//! `tooz bench` measures `get_members` with one coordinator per member; a SQL member is a
//! database session, so 1,000 members need 1,000 connections, more than the servers of
//! `scripts/services` allow (300). Here the 1,000 member rows are written directly, bound
//! to one live session (the reader's own, so that they count as alive), and `get_members`
//! is timed. Needs the servers of `scripts/services` (`TOOZ_POSTGRESQL_URL`,
//! `TOOZ_MYSQL_URL`). Prints `name value` lines; nothing here asserts a timing.

use std::time::{Duration, Instant};

use tooz::Coordinator;

mod support;

use support::{percentile, started};

const MEMBERS: usize = 1_000;
const READS: usize = 200;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn time_reads(label: &str, coord: &Coordinator, group: &str) {
    let mut samples: Vec<Duration> = Vec::with_capacity(READS);
    for _ in 0..READS {
        let start = Instant::now();
        let members = coord.get_members(group).await.unwrap();
        samples.push(start.elapsed());
        assert_eq!(members.len(), MEMBERS);
    }
    for (name, p) in [("p50", 0.5), ("p99", 0.99)] {
        let ms = percentile(&mut samples, p).as_secs_f64() * 1e3;
        println!("{label}_get_members_{MEMBERS}_{name}_ms {ms:.3}");
    }
}

#[cfg(feature = "postgresql")]
async fn postgresql() {
    let url = std::env::var("TOOZ_POSTGRESQL_URL")
        .unwrap_or_else(|_| "postgresql://tooz:tooz@127.0.0.1:5432/tooz".into());
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let reader = started(&url, "bench-sql-reader").await;
    let group = format!("bench-sql-{}", std::process::id());
    reader.create_group(group.as_str()).await.unwrap();
    reader.join_group(group.as_str(), ()).await.unwrap();
    let session: i64 = client
        .query_one(
            "SELECT session FROM tooz_members WHERE grp = $1 AND member = $2",
            &[&group.as_bytes(), &b"bench-sql-reader".as_slice()],
        )
        .await
        .unwrap()
        .get(0);
    client
        .execute(
            "INSERT INTO tooz_members (grp, member, caps, session)
             SELECT $1, convert_to('bench-m-' || i, 'UTF8'), '\\xc0'::bytea, $2
             FROM generate_series(1, $3::int) i",
            &[&group.as_bytes(), &session, &((MEMBERS - 1) as i32)],
        )
        .await
        .unwrap();
    time_reads("postgresql", &reader, &group).await;
    client
        .execute(
            "DELETE FROM tooz_members WHERE grp = $1 AND member <> $2",
            &[&group.as_bytes(), &b"bench-sql-reader".as_slice()],
        )
        .await
        .unwrap();
    reader.leave_group(group.as_str()).await.unwrap();
    reader.delete_group(group.as_str()).await.unwrap();
    reader.stop().await.unwrap();
}

#[cfg(feature = "mysql")]
async fn mysql() {
    use mysql_async::prelude::Queryable;
    use sha2::{Digest, Sha256};
    let url = std::env::var("TOOZ_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://tooz:tooz@127.0.0.1:3306/tooz".into());
    let raw_url = format!("{}?prefer_socket=false", url.split('?').next().unwrap());
    let mut conn = mysql_async::Conn::from_url(raw_url.as_str()).await.unwrap();
    let reader = started(&url, "bench-sql-reader").await;
    let group = format!("bench-sql-{}", std::process::id());
    reader.create_group(group.as_str()).await.unwrap();
    reader.join_group(group.as_str(), ()).await.unwrap();
    let gid = Sha256::digest(group.as_bytes()).to_vec();
    let session: String = conn
        .exec_first(
            "SELECT session FROM tooz_members WHERE grp = ? AND member = ?",
            (&gid, "bench-sql-reader"),
        )
        .await
        .unwrap()
        .unwrap();
    let rows: Vec<String> = (1..MEMBERS)
        .map(|i| {
            let member = format!("bench-m-{i}");
            format!(
                "(X'{}', X'{}', X'{}', X'c0', '{session}', 0)",
                hex(&gid),
                hex(&Sha256::digest(member.as_bytes())),
                hex(member.as_bytes())
            )
        })
        .collect();
    conn.query_drop(format!(
        "INSERT INTO tooz_members (grp, mid, member, caps, session, joined_at) VALUES {}",
        rows.join(",")
    ))
    .await
    .unwrap();
    time_reads("mysql", &reader, &group).await;
    conn.exec_drop(
        "DELETE FROM tooz_members WHERE grp = ? AND member <> ?",
        (&gid, "bench-sql-reader"),
    )
    .await
    .unwrap();
    reader.leave_group(group.as_str()).await.unwrap();
    reader.delete_group(group.as_str()).await.unwrap();
    reader.stop().await.unwrap();
    conn.disconnect().await.unwrap();
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        #[cfg(feature = "postgresql")]
        postgresql().await;
        #[cfg(feature = "mysql")]
        mysql().await;
    });
}
