//! The driver's tables, statements and lock names.
//!
//! Tables (prefix = the `namespace` option, default `tooz`), created on first use:
//!
//! | table | columns |
//! |---|---|
//! | `<ns>_groups` | `id` (SHA-256 of the name, key), `name`, `version` (bumped by every join and leave) |
//! | `<ns>_members` | `grp` → groups (cascade), `mid` (SHA-256 of the member id), `member`, `caps` (msgpack), `session`, `joined_at` |
//! | `<ns>_locks` | `name` (the lock's server name, key), `token` (fencing counter), `holder`, `conn_id` |
//! | `<ns>_breaks` | `conn_id`, `name`: locks broken by ending their holder's connection |
//!
//! A member row is alive while the named lock in its `session` column is held (by the
//! joining coordinator's connection: `IS_USED_LOCK(session) IS NOT NULL`).

use sha2::{Digest, Sha256};

use crate::id::Id;

/// Longest lock name the server takes (MySQL 5.7+; MariaDB takes longer ones).
pub(super) const MAX_LOCK_NAME: usize = 64;

/// SHA-256 of `bytes`: the fixed-size key of a group or member id.
pub(super) fn digest(bytes: &[u8]) -> Vec<u8> {
    Sha256::digest(bytes).to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `GET_LOCK` name of lock `name`: the name itself, as Python tooz passes it, when it is
/// UTF-8 of at most 64 characters; otherwise `~h~` and 61 hex digits of its SHA-256 (a name
/// no server refuses, the same in every process).
pub(super) fn lock_name(name: &Id) -> String {
    match name.as_str() {
        Some(text) if text.chars().count() <= MAX_LOCK_NAME && !text.contains('\0') => {
            text.to_string()
        }
        _ => format!("~h~{}", &hex(&digest(name.as_bytes()))[..MAX_LOCK_NAME - 3]),
    }
}

/// Names, statements and table names of one namespace.
#[derive(Debug, Clone)]
pub(super) struct Layout {
    ns: String,
}

impl Layout {
    pub fn new(ns: &str) -> Self {
        Layout { ns: ns.to_string() }
    }

    /// The lock that keeps the members of one connection alive.
    pub fn session_lock(&self, random: u64) -> String {
        format!("{}.s.{random:016x}", self.ns)
    }

    /// Creates the tables (each statement is idempotent).
    pub fn create_tables(&self) -> Vec<String> {
        let ns = &self.ns;
        vec![
            format!(
                "CREATE TABLE IF NOT EXISTS {ns}_groups (
                     id BINARY(32) NOT NULL PRIMARY KEY,
                     name LONGBLOB NOT NULL,
                     version BIGINT NOT NULL DEFAULT 0) ENGINE=InnoDB"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {ns}_members (
                     grp BINARY(32) NOT NULL,
                     mid BINARY(32) NOT NULL,
                     member LONGBLOB NOT NULL,
                     caps LONGBLOB NOT NULL,
                     session VARCHAR(64) NOT NULL,
                     joined_at BIGINT NOT NULL,
                     PRIMARY KEY (grp, mid),
                     FOREIGN KEY (grp) REFERENCES {ns}_groups (id) ON DELETE CASCADE) ENGINE=InnoDB"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {ns}_locks (
                     name VARBINARY(256) NOT NULL PRIMARY KEY,
                     token BIGINT NOT NULL,
                     holder LONGBLOB,
                     conn_id BIGINT) ENGINE=InnoDB"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {ns}_breaks (
                     conn_id BIGINT NOT NULL,
                     name VARBINARY(256) NOT NULL,
                     PRIMARY KEY (conn_id, name)) ENGINE=InnoDB"
            ),
        ]
    }

    /// Sets `@tooz_epoch`, the server's start in seconds since 2020-01-01: the epoch of the
    /// tokens granted on this connection (see [`Layout::acquire`]).
    pub fn set_epoch(&self) -> &'static str {
        "SET @tooz_epoch = UNIX_TIMESTAMP() - 1577836800 - (SELECT VARIABLE_VALUE \
         FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'UPTIME')"
    }

    /// (key, holder, server lock name): the try and the fencing token bumped in one
    /// statement; affected rows 0 = busy, else the token is `LAST_INSERT_ID()`.
    ///
    /// A token is `epoch << 22 | counter`, epoch = the server's start (`@tooz_epoch`): a
    /// token from before the server's start is replaced by `epoch << 22 | 1`, so tokens keep
    /// increasing after a crash that lost the last counter bumps (a server whose commits are
    /// not flushed at once, `innodb_flush_log_at_trx_commit=0`).
    pub fn acquire(&self) -> String {
        format!(
            "INSERT INTO {}_locks (name, token, holder, conn_id)
             SELECT ?, LAST_INSERT_ID((@tooz_epoch << 22) | 1), ?, CONNECTION_ID() FROM DUAL
             WHERE GET_LOCK(?, 0) = 1
             ON DUPLICATE KEY UPDATE token = LAST_INSERT_ID(IF((token >> 22) < @tooz_epoch,
                     (@tooz_epoch << 22) | 1, token + 1)),
                 holder = VALUES(holder), conn_id = VALUES(conn_id)",
            self.ns
        )
    }

    /// (key, holder, server lock name, seconds): as [`Layout::acquire`], waiting up to
    /// `seconds` on the server for the lock (on a waiting connection).
    pub fn acquire_waiting(&self) -> String {
        self.acquire().replace("GET_LOCK(?, 0)", "GET_LOCK(?, ?)")
    }

    /// (key) → (holder, conn_id) recorded for a lock.
    pub fn holder(&self) -> String {
        format!(
            "SELECT holder, conn_id FROM {}_locks WHERE name = ?",
            self.ns
        )
    }

    /// (conn_id, key): records a break.
    pub fn record_break(&self) -> String {
        format!(
            "INSERT IGNORE INTO {}_breaks (conn_id, name) VALUES (?, ?)",
            self.ns
        )
    }

    /// (conn_id) → names broken.
    pub fn breaks_of(&self) -> String {
        format!("SELECT name FROM {}_breaks WHERE conn_id = ?", self.ns)
    }

    /// (conn_id): forgets them.
    pub fn forget_breaks(&self) -> String {
        format!("DELETE FROM {}_breaks WHERE conn_id = ?", self.ns)
    }

    /// (id, name) → affected rows (1: created).
    pub fn create_group(&self) -> String {
        format!(
            "INSERT IGNORE INTO {}_groups (id, name) VALUES (?, ?)",
            self.ns
        )
    }

    /// (id) → version, locking the group's row.
    pub fn lock_group(&self) -> String {
        format!(
            "SELECT version FROM {}_groups WHERE id = ? FOR UPDATE",
            self.ns
        )
    }

    /// (id) → version.
    pub fn group_version(&self) -> String {
        format!("SELECT version FROM {}_groups WHERE id = ?", self.ns)
    }

    /// (id): a join or leave happened.
    pub fn bump_group(&self) -> String {
        format!(
            "UPDATE {}_groups SET version = version + 1 WHERE id = ?",
            self.ns
        )
    }

    /// (grp) → count of live members.
    pub fn live_count(&self) -> String {
        format!(
            "SELECT COUNT(*) FROM {}_members WHERE grp = ? AND IS_USED_LOCK(session) IS NOT NULL",
            self.ns
        )
    }

    /// (id): deletes the group and (cascade) its dead members.
    pub fn delete_group(&self) -> String {
        format!("DELETE FROM {}_groups WHERE id = ?", self.ns)
    }

    /// () → names.
    pub fn get_groups(&self) -> String {
        format!("SELECT name FROM {}_groups", self.ns)
    }

    /// (grp, mid) → whether the member's row is alive.
    pub fn member_alive(&self) -> String {
        format!(
            "SELECT IS_USED_LOCK(session) IS NOT NULL FROM {}_members WHERE grp = ? AND mid = ?",
            self.ns
        )
    }

    /// (grp, mid, member, caps, session, joined_at): joins (over a dead row, if any).
    pub fn join(&self) -> String {
        format!(
            "REPLACE INTO {}_members (grp, mid, member, caps, session, joined_at)
             VALUES (?, ?, ?, ?, ?, ?)",
            self.ns
        )
    }

    /// (grp, mid): leaves.
    pub fn leave(&self) -> String {
        format!("DELETE FROM {}_members WHERE grp = ? AND mid = ?", self.ns)
    }

    /// (id) → rows (member, caps), null for an empty group; no row: no group.
    pub fn members(&self) -> String {
        let ns = &self.ns;
        format!(
            "SELECT m.member, m.caps FROM {ns}_groups g
             LEFT JOIN {ns}_members m ON m.grp = g.id AND IS_USED_LOCK(m.session) IS NOT NULL
             WHERE g.id = ?"
        )
    }

    /// (id, mid) → (caps, joined_at, session) of a live member, nulls if not; no row: no
    /// group.
    pub fn member(&self) -> String {
        let ns = &self.ns;
        format!(
            "SELECT m.caps, m.joined_at, m.session FROM {ns}_groups g
             LEFT JOIN {ns}_members m ON m.grp = g.id AND m.mid = ?
                 AND IS_USED_LOCK(m.session) IS NOT NULL
             WHERE g.id = ?"
        )
    }

    /// (caps, grp, mid) → affected rows.
    pub fn update_caps(&self) -> String {
        format!(
            "UPDATE {}_members SET caps = ? WHERE grp = ? AND mid = ?
                 AND IS_USED_LOCK(session) IS NOT NULL",
            self.ns
        )
    }

    /// (id) → whether the group exists.
    pub fn group_exists(&self) -> String {
        format!("SELECT COUNT(*) FROM {}_groups WHERE id = ?", self.ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_python_tooz_names() {
        assert_eq!(lock_name(&Id::from("reindex")), "reindex");
        let exact = "x".repeat(64);
        assert_eq!(lock_name(&Id::from(exact.as_str())), exact);
    }

    #[test]
    fn long_and_binary_names_are_hashed_deterministically() {
        let long = Id::from("y".repeat(65));
        let hashed = lock_name(&long);
        assert_eq!(hashed.chars().count(), 64);
        assert!(hashed.starts_with("~h~"));
        assert_eq!(hashed, lock_name(&long));
        assert_ne!(hashed, lock_name(&Id::from("y".repeat(66))));
        let binary = Id::from(vec![0xff, 0x00]);
        assert!(lock_name(&binary).starts_with("~h~"));
    }
}
