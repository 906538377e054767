//! The driver registry: every scheme tooz knows, its aliases, and how to build its driver.
//!
//! This is the only place in the core that names drivers.

use std::sync::Arc;

use crate::driver::Driver;
use crate::error::{Error, Result};
use crate::id::Id;
pub use crate::types::DriverFacts;
use crate::url::DriverUrl;

// With only some drivers built, some of the toolkit has no user.
#[cfg_attr(
    not(all(
        feature = "zake",
        feature = "file",
        feature = "ipc",
        feature = "redis",
        feature = "zookeeper",
        feature = "memcached",
        feature = "postgresql",
        feature = "mysql",
        feature = "etcd",
        feature = "etcd3",
        feature = "etcd3-http",
        feature = "consul"
    )),
    allow(dead_code, unused_imports)
)]
pub(crate) mod common;
#[cfg(feature = "consul")]
mod consul;
#[cfg(feature = "etcd")]
mod etcd;
#[cfg(any(feature = "etcd3", feature = "etcd3-http"))]
mod etcd3;
#[cfg(feature = "etcd3-http")]
use etcd3::gateway as etcd3_gateway;
#[cfg(feature = "etcd3")]
use etcd3::grpc as etcd3_grpc;
#[cfg(feature = "file")]
pub mod file;
// With only one HTTP driver built, part of the client has no user.
#[cfg(feature = "http-client")]
#[cfg_attr(
    not(all(feature = "etcd", feature = "etcd3-http", feature = "consul")),
    allow(dead_code)
)]
mod http;
#[cfg(feature = "ipc")]
pub mod ipc;
#[cfg(any(feature = "etcd3", feature = "etcd3-http"))]
mod lease_kv;
#[cfg(feature = "memcached")]
pub mod memcached;
#[cfg(feature = "mysql")]
pub mod mysql;
#[cfg(feature = "postgresql")]
pub mod postgresql;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(any(
    feature = "redis-tls",
    feature = "zookeeper-tls",
    feature = "memcached-tls",
    feature = "http-client-tls"
))]
mod tls;
#[cfg(any(feature = "memcached-tls", feature = "http-client-tls"))]
mod tls_config;
#[cfg(feature = "zake")]
pub mod zake;
#[cfg(feature = "zookeeper")]
pub mod zookeeper;

/// Whether a driver can be used in this build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    /// Compiled in and usable.
    Available,
    /// Implemented, but this build left out its cargo feature.
    NotCompiledIn,
    /// Known scheme whose driver is not written yet.
    NotImplementedYet,
}

type Constructor = fn(&DriverUrl, &Id) -> Result<Arc<dyn Driver>>;

/// One scheme of the registry.
#[derive(Debug, Clone, Copy)]
pub struct DriverEntry {
    /// Canonical scheme (tooz's name).
    pub scheme: &'static str,
    /// Other schemes that select the same driver.
    pub aliases: &'static [&'static str],
    /// The cargo feature that compiles it in.
    pub feature: &'static str,
    /// One line about the backend.
    pub summary: &'static str,
    /// Whether it is usable in this build.
    pub availability: Availability,
    /// Its declared facts, when available.
    pub facts: Option<DriverFacts>,
    constructor: Option<Constructor>,
}

const fn planned(
    scheme: &'static str,
    aliases: &'static [&'static str],
    feature: &'static str,
    summary: &'static str,
) -> DriverEntry {
    DriverEntry {
        scheme,
        aliases,
        feature,
        summary,
        availability: Availability::NotImplementedYet,
        facts: None,
        constructor: None,
    }
}

/// Declares the registry entry of a driver module behind its cargo feature: available when the
/// feature is on, "not compiled in" when it is off.
macro_rules! built_driver {
    ($entry:ident, $module:ident, $feature:literal, $scheme:literal, $aliases:expr, $summary:literal) => {
        #[cfg(feature = $feature)]
        fn $entry() -> DriverEntry {
            DriverEntry {
                availability: Availability::Available,
                facts: Some($module::FACTS),
                constructor: Some($module::build),
                ..planned($scheme, $aliases, $feature, $summary)
            }
        }

        #[cfg(not(feature = $feature))]
        fn $entry() -> DriverEntry {
            DriverEntry {
                availability: Availability::NotCompiledIn,
                ..planned($scheme, $aliases, $feature, $summary)
            }
        }
    };
}

built_driver!(
    zake_entry,
    zake,
    "zake",
    "zake",
    &["memory"],
    "in-process server for tests and single-process programs"
);
built_driver!(
    file_entry,
    file,
    "file",
    "file",
    &[],
    "files and POSIX record locks, one host"
);
built_driver!(
    ipc_entry,
    ipc,
    "ipc",
    "ipc",
    &[],
    "System V semaphores and shared memory, one host"
);

built_driver!(
    zookeeper_entry,
    zookeeper,
    "zookeeper",
    "zookeeper",
    &["kazoo"],
    "Apache ZooKeeper: sessions, ephemeral and sequential nodes"
);
built_driver!(
    memcached_entry,
    memcached,
    "memcached",
    "memcached",
    &[],
    "memcached: timeout-based keys; a cache, so evictions can lose locks (see its docs)"
);
built_driver!(
    redis_entry,
    redis,
    "redis",
    "redis",
    &["rediss"],
    "Redis, optionally behind Sentinel"
);

built_driver!(
    etcd_entry,
    etcd,
    "etcd",
    "etcd",
    &[],
    "etcd's v2 keys API: keys with TTLs, compare-and-swap, long polls"
);
built_driver!(
    etcd3_entry,
    etcd3_grpc,
    "etcd3",
    "etcd3",
    &[],
    "etcd v3 over gRPC: leases, transactions, watches"
);
built_driver!(
    etcd3_http_entry,
    etcd3_gateway,
    "etcd3-http",
    "etcd3+http",
    &["etcd3+https"],
    "etcd v3 through its JSON gRPC gateway"
);
built_driver!(
    postgresql_entry,
    postgresql,
    "postgresql",
    "postgresql",
    &["postgres"],
    "PostgreSQL: advisory locks, groups in tables, LISTEN/NOTIFY"
);

built_driver!(
    mysql_entry,
    mysql,
    "mysql",
    "mysql",
    &["mariadb"],
    "MySQL/MariaDB: named locks (GET_LOCK), groups in tables"
);

built_driver!(
    consul_entry,
    consul,
    "consul",
    "consul",
    &[],
    "HashiCorp Consul: sessions, KV acquire/release, blocking queries"
);

/// Every scheme tooz knows, in a stable order.
pub fn registry() -> Vec<DriverEntry> {
    vec![
        zookeeper_entry(),
        zake_entry(),
        memcached_entry(),
        redis_entry(),
        ipc_entry(),
        file_entry(),
        postgresql_entry(),
        mysql_entry(),
        etcd_entry(),
        etcd3_entry(),
        etcd3_http_entry(),
        consul_entry(),
    ]
}

/// The registry entry answering to `scheme` (canonical or alias).
pub fn lookup(scheme: &str) -> Option<DriverEntry> {
    registry()
        .into_iter()
        .find(|e| e.scheme == scheme || e.aliases.contains(&scheme))
}

/// Builds the driver for `url`, as [`Coordinator::connect`](crate::Coordinator::connect) does:
/// for wrapping it (tracing, fault injection) and handing it to
/// [`Coordinator::with_driver`](crate::Coordinator::with_driver).
///
/// ```
/// let url = tooz::DriverUrl::parse("zake://").unwrap();
/// let driver = tooz::drivers::build(&url, &"worker-1".into()).unwrap();
/// assert_eq!(driver.scheme(), "zake");
/// ```
pub fn build(url: &DriverUrl, member: &Id) -> Result<Arc<dyn Driver>> {
    let entry = lookup(url.scheme()).ok_or_else(|| Error::UnknownScheme {
        scheme: url.scheme().to_string(),
        known: registry()
            .iter()
            .flat_map(|e| std::iter::once(e.scheme).chain(e.aliases.iter().copied()))
            .collect::<Vec<_>>()
            .join(", "),
    })?;
    match (entry.availability, entry.constructor) {
        (Availability::Available, Some(construct)) => construct(url, member),
        (Availability::NotCompiledIn, _) => Err(Error::DriverUnavailable {
            scheme: entry.scheme.to_string(),
            why: format!(
                "not compiled in (enable the cargo feature `{}` of the tooz crate)",
                entry.feature
            ),
        }),
        _ => Err(Error::DriverUnavailable {
            scheme: entry.scheme.to_string(),
            why: "not implemented yet".to_string(),
        }),
    }
}
