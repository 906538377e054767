//! The driver's tables, statements, advisory-lock keys and notification channels.
//!
//! Tables (prefix = the `namespace` option, default `tooz`), created on first use:
//!
//! | table | columns |
//! |---|---|
//! | `<ns>_groups` | `name bytea` (key), `created_at` |
//! | `<ns>_members` | `grp bytea` → groups (cascade), `member bytea`, `caps bytea` (msgpack), `session bigint`, `joined_at` |
//! | `<ns>_locks` | `name bytea` (key), `token bigint` (fencing counter), `holder bytea`, `session bigint`, `pid int` |
//!
//! A member row is alive while the advisory lock whose 64-bit key is its `session` is held
//! (by the joining coordinator's database session); rows whose session key is free are dead
//! and ignored, and a join over a dead row takes it over.

use md5::{Digest as _, Md5};
use sha2::Sha256;

use super::options::KeyMode;
use crate::id::Id;

/// The live session keys of this database: the 64-bit advisory locks granted now.
const LIVE: &str = "(SELECT (l.classid::bigint << 32) | l.objid::bigint FROM pg_locks l \
     WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted \
     AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()))";

/// Table names, statements and key derivation of one namespace.
#[derive(Debug, Clone)]
pub(super) struct Layout {
    ns: String,
    keys: KeyMode,
}

/// The 64-bit key of `name` as Python tooz derives its pair (`md5[0]`, `md5[1]`): the pair
/// packed as `md5[0] << 32 | md5[1]`.
pub(super) fn python_key(name: &[u8]) -> i64 {
    let digest = Md5::digest(name);
    (i64::from(digest[0]) << 32) | i64::from(digest[1])
}

/// Our 64-bit key of `name` in namespace `ns`: the first 8 bytes of SHA-256.
pub(super) fn native_key(ns: &str, name: &[u8]) -> i64 {
    let mut hasher = Sha256::new();
    hasher.update(b"tooz-pg-lock\0");
    hasher.update(ns.as_bytes());
    hasher.update(b"\0");
    hasher.update(name);
    let digest = hasher.finalize();
    i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

fn short_hash(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    let digest = hasher.finalize();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

impl Layout {
    pub fn new(ns: &str, keys: KeyMode) -> Self {
        Layout {
            ns: ns.to_string(),
            keys,
        }
    }

    /// The advisory key of lock `name`.
    pub fn lock_key(&self, name: &Id) -> i64 {
        match self.keys {
            KeyMode::Native => native_key(&self.ns, name.as_bytes()),
            KeyMode::Python => python_key(name.as_bytes()),
        }
    }

    /// The channel announcing releases (and breaks) of lock `name`.
    pub fn lock_channel(&self, name: &Id) -> String {
        let key = self.lock_key(name).to_be_bytes();
        format!("{}_l_{}", self.ns, short_hash(&[&key]))
    }

    /// The channel announcing joins and leaves of `group`.
    pub fn group_channel(&self, group: &Id) -> String {
        format!("{}_g_{}", self.ns, short_hash(&[group.as_bytes()]))
    }

    /// The channel on which the coordinator of session `key` is asked to give up a lock.
    pub fn session_channel(&self, key: i64) -> String {
        format!("{}_s_{:016x}", self.ns, key)
    }

    /// Creates the tables (one implicit transaction, serialised by a transaction-level
    /// advisory lock so that two first users do not race on the catalogue).
    pub fn create_tables(&self) -> String {
        let ns = &self.ns;
        let guard = native_key(ns, b"\0create-tables");
        format!(
            "SELECT pg_advisory_xact_lock({guard});
             CREATE TABLE IF NOT EXISTS {ns}_groups (
                 name bytea PRIMARY KEY,
                 created_at timestamptz NOT NULL DEFAULT now());
             CREATE TABLE IF NOT EXISTS {ns}_members (
                 grp bytea NOT NULL REFERENCES {ns}_groups (name) ON DELETE CASCADE,
                 member bytea NOT NULL,
                 caps bytea NOT NULL,
                 session bigint NOT NULL,
                 joined_at timestamptz NOT NULL DEFAULT now(),
                 PRIMARY KEY (grp, member));
             CREATE TABLE IF NOT EXISTS {ns}_locks (
                 name bytea PRIMARY KEY,
                 token bigint NOT NULL,
                 holder bytea,
                 session bigint,
                 pid integer);"
        )
    }

    /// True when the tables exist.
    pub fn tables_exist(&self) -> String {
        let ns = &self.ns;
        format!(
            "SELECT to_regclass('{ns}_groups') IS NOT NULL AND to_regclass('{ns}_members') IS NOT NULL \
             AND to_regclass('{ns}_locks') IS NOT NULL"
        )
    }

    /// `function(key)`, with the key as this mode passes it.
    fn call(&self, function: &str) -> String {
        match self.keys {
            KeyMode::Native => format!("{function}($1::bigint)"),
            KeyMode::Python => {
                format!("{function}(($1::bigint >> 32)::int, ($1::bigint & 4294967295)::int)")
            }
        }
    }

    fn try_lock_call(&self, shared: bool) -> String {
        self.call(if shared {
            "pg_try_advisory_lock_shared"
        } else {
            "pg_try_advisory_lock"
        })
    }

    fn unlock_call(&self, shared: bool) -> String {
        self.call(if shared {
            "pg_advisory_unlock_shared"
        } else {
            "pg_advisory_unlock"
        })
    }

    /// The condition that pg_locks row `l` is the advisory lock of key `$1`.
    fn key_match(&self) -> &'static str {
        match self.keys {
            KeyMode::Native => {
                "l.locktype = 'advisory' AND l.objsubid = 1 \
                 AND l.classid = (($1::bigint >> 32) & 4294967295)::oid AND l.objid = ($1::bigint & 4294967295)::oid \
                 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            }
            KeyMode::Python => {
                "l.locktype = 'advisory' AND l.objsubid = 2 \
                 AND l.classid = ($1::bigint >> 32)::oid AND l.objid = ($1::bigint & 4294967295)::oid \
                 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            }
        }
    }

    /// ($1 key, $2 name, $3 holder, $4 session) → (got, token): the try and, when it
    /// succeeds, the fencing token bumped, in one statement.
    ///
    /// A token is `epoch << 22 | counter`, epoch = the server's start in ms since 2020
    /// (`pg_postmaster_start_time()`): a token from before the server's start is replaced
    /// by `epoch << 22 | 1`, so tokens keep increasing after a crash that lost the last
    /// commits (the driver's sessions commit asynchronously).
    pub fn acquire(&self, shared: bool) -> String {
        let ns = &self.ns;
        let try_lock = self.try_lock_call(shared);
        format!(
            "WITH g AS (SELECT {try_lock} AS got,
                         (floor(extract(epoch FROM pg_postmaster_start_time()) * 1000)::bigint
                             - 1577836800000) AS epoch),
                  u AS (INSERT INTO {ns}_locks AS t (name, token, holder, session, pid)
                        SELECT $2, (g.epoch << 22) | 1, $3, $4, pg_backend_pid() FROM g WHERE g.got
                        ON CONFLICT (name) DO UPDATE SET
                            token = CASE WHEN (t.token >> 22) < (EXCLUDED.token >> 22)
                                THEN EXCLUDED.token ELSE t.token + 1 END,
                            holder = EXCLUDED.holder, session = EXCLUDED.session, pid = EXCLUDED.pid
                        RETURNING t.token)
             SELECT g.got, (SELECT token FROM u) FROM g"
        )
    }

    /// ($1 key, $2 channel) → released: unlock and announce.
    pub fn release(&self, shared: bool) -> String {
        format!(
            "SELECT {}, pg_notify($2::text, 'r')",
            self.unlock_call(shared)
        )
    }

    /// ($1 key) → released, without announcing.
    pub fn unlock(&self, shared: bool) -> String {
        format!("SELECT {}", self.unlock_call(shared))
    }

    /// ($1 key, $2 name) → (holder pid or null, holder row's member when that pid holds it,
    /// its session).
    pub fn holder(&self) -> String {
        let ns = &self.ns;
        let key_match = self.key_match();
        format!(
            "SELECT (SELECT l.pid FROM pg_locks l WHERE {key_match} AND l.granted LIMIT 1),
                    t.holder, t.session, t.pid
             FROM (SELECT 1) one LEFT JOIN {ns}_locks t ON t.name = $2"
        )
    }

    /// ($1 pid) → whether the backend was signalled.
    pub fn terminate(&self) -> &'static str {
        "SELECT pg_terminate_backend($1)"
    }

    /// ($1 channel, $2 payload): a notification.
    pub fn notify(&self) -> &'static str {
        "SELECT pg_notify($1::text, $2::text)"
    }

    /// ($1 name) → created.
    pub fn create_group(&self) -> String {
        format!(
            "INSERT INTO {}_groups (name) VALUES ($1) ON CONFLICT DO NOTHING",
            self.ns
        )
    }

    /// ($1 name) → (deleted, existed).
    pub fn delete_group(&self) -> String {
        let ns = &self.ns;
        format!(
            "WITH d AS (DELETE FROM {ns}_groups g WHERE g.name = $1 AND NOT EXISTS (
                     SELECT 1 FROM {ns}_members m WHERE m.grp = $1 AND m.session IN {LIVE})
                 RETURNING 1)
             SELECT EXISTS (SELECT 1 FROM d), EXISTS (SELECT 1 FROM {ns}_groups WHERE name = $1)"
        )
    }

    /// () → names.
    pub fn get_groups(&self) -> String {
        format!("SELECT name FROM {}_groups", self.ns)
    }

    /// ($1 group, $2 member, $3 caps, $4 session, $5 channel) → rows: one if joined (a new
    /// row, or a dead one taken over).
    pub fn join(&self) -> String {
        let ns = &self.ns;
        format!(
            "INSERT INTO {ns}_members AS m (grp, member, caps, session) VALUES ($1, $2, $3, $4)
             ON CONFLICT (grp, member) DO UPDATE SET caps = EXCLUDED.caps,
                 session = EXCLUDED.session, joined_at = now()
             WHERE m.session NOT IN {LIVE}
             RETURNING pg_notify($5::text, CASE WHEN length($2) <= 3900 THEN 'J' || encode($2, 'hex') ELSE 'R' END)"
        )
    }

    /// ($1 group, $2 member, $3 channel) → (the removed row was alive (null: no row), group
    /// exists).
    pub fn leave(&self) -> String {
        let ns = &self.ns;
        format!(
            "WITH d AS (DELETE FROM {ns}_members WHERE grp = $1 AND member = $2
                 RETURNING session IN {LIVE} AS alive)
             SELECT (SELECT alive FROM d), EXISTS (SELECT 1 FROM {ns}_groups WHERE name = $1),
                 (SELECT pg_notify($3::text, CASE WHEN length($2) <= 3900 THEN 'L' || encode($2, 'hex') ELSE 'R' END) FROM d WHERE alive)::text"
        )
    }

    /// ($1 group) → rows (member, caps), member null for an empty group; no row: no group.
    pub fn members(&self) -> String {
        let ns = &self.ns;
        format!(
            "SELECT m.member, m.caps FROM {ns}_groups g
             LEFT JOIN {ns}_members m ON m.grp = g.name AND m.session IN {LIVE}
             WHERE g.name = $1"
        )
    }

    /// ($1 group, $2 member) → (caps, joined_at, session) of a live member, nulls if not;
    /// no row: no group.
    pub fn member(&self) -> String {
        let ns = &self.ns;
        format!(
            "SELECT m.caps, m.joined_at, m.session FROM {ns}_groups g
             LEFT JOIN {ns}_members m ON m.grp = g.name AND m.member = $2 AND m.session IN {LIVE}
             WHERE g.name = $1"
        )
    }

    /// ($1 group, $2 member, $3 caps) → (updated, group exists).
    pub fn update_caps(&self) -> String {
        let ns = &self.ns;
        format!(
            "WITH u AS (UPDATE {ns}_members SET caps = $3
                 WHERE grp = $1 AND member = $2 AND session IN {LIVE} RETURNING 1)
             SELECT EXISTS (SELECT 1 FROM u), EXISTS (SELECT 1 FROM {ns}_groups WHERE name = $1)"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_keys_match_tooz() {
        // Appendix A of the reference: b'mylock' → (200, 223), b'test-lock' → (180, 128).
        assert_eq!(python_key(b"mylock"), (200 << 32) | 223);
        assert_eq!(python_key(b"test-lock"), (180 << 32) | 128);
    }

    #[test]
    fn native_keys_depend_on_namespace_and_name() {
        assert_ne!(native_key("a", b"x"), native_key("b", b"x"));
        assert_ne!(native_key("a", b"x"), native_key("a", b"y"));
        assert_eq!(native_key("a", b"x"), native_key("a", b"x"));
    }

    #[test]
    fn channels_are_short_identifiers() {
        let layout = Layout::new(&"n".repeat(40), KeyMode::Native);
        let name = Id::from(vec![0xff; 1000]);
        for channel in [
            layout.lock_channel(&name),
            layout.group_channel(&name),
            layout.session_channel(i64::MAX),
        ] {
            assert!(channel.len() <= 63, "{channel}");
            assert!(channel
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_'));
        }
    }
}
