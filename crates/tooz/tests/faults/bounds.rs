//! The timing of the suite, in one place: the options it adds to each driver's URL and the
//! bounds the driver documents for them, each with where it comes from.

use std::time::Duration;

/// Added to every documented bound: scheduling on a loaded machine, a waiter's poll interval,
/// and ZooKeeper's session-expiry tick (`tickTime` is 0.5 s in `scripts/services`).
pub const SLACK: Duration = Duration::from_secs(1);

/// How long a client may take to work again once the network healed or a restarted server is
/// back. No driver documents it: a test limit, far above what the drivers need.
pub const RECOVER: Duration = Duration::from_secs(15);

/// Longest a case may run before it counts as hung.
pub const CASE: Duration = Duration::from_secs(90);

/// What a driver promises under faults, for the URL options the suite sets.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Query options added to the URL under test; every bound below follows from them.
    pub options: &'static str,
    /// Longest a call may take on a dead connection before it fails.
    pub call: Duration,
    /// Longest from a holder's cut-off until its `lost()` fires.
    pub lost: Duration,
    /// Longest from a holder's cut-off or death until another client can take its lock.
    pub free: Duration,
    /// Whether `lost()` fires before another client can take the lock. Where it does not,
    /// the holder must at least be `Suspended` by then (the core's promise, `ConnectionState`).
    pub lost_before_free: bool,
    /// Longest from a member's death until a watcher sees it leave.
    pub member_gone: Duration,
    /// Whether a coordinator whose session was `Lost` joins its groups again by itself once
    /// the backend answers. Otherwise its memberships went with the session (the core's
    /// `ConnectionState::Lost`), and joining again is the application's move.
    pub rejoins_after_lost: bool,
    /// Longest after healing until a lock taken by a request whose reply was lost is free.
    pub orphan_lock: Duration,
    /// Longest after healing until a queue place taken by a request whose reply was lost
    /// stops holding up the queue.
    pub orphan_place: Duration,
}

/// The bounds of the driver named `scheme`; `None` for a driver this table does not cover.
pub fn of(scheme: &str) -> Option<Bounds> {
    const fn s(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }
    match scheme {
        // crates/tooz/src/drivers/redis/mod.rs, with `timeout=2`: lock_timeout and
        // membership_timeout are 2 s, so the window W = min(both) = 2 s.
        "redis" => Some(Bounds {
            options: "timeout=2",
            // The core bounds each call by the driver's session timeout, W / 2
            // (socket_timeout, W / 8, makes most calls fail sooner).
            call: s(1000),
            // "Lost (firing every lost()) after window / 2 without a successful heartbeat,
            // before its keys can expire": at most W after the last heartbeat before the cut.
            lost: s(2000),
            // A lock key's TTL is lock_timeout; only the holder's heartbeat renews it.
            free: s(2000),
            lost_before_free: true,
            // The beat key's TTL is membership_timeout (2 s); watches re-read membership every
            // resync_interval (1 s), which is how they see an expiry nobody announces.
            member_gone: s(3000),
            // Nothing in the driver's docs: a Lost session's memberships stay lost.
            rejoins_after_lost: false,
            // Nobody renews the orphan's key: it expires after lock_timeout.
            orphan_lock: s(2000),
            // "A place lives max(4 × poll_cap, 1 s)": poll_cap = poll_interval = 0.1 s.
            orphan_place: s(1000),
        }),
        // crates/tooz/src/drivers/zookeeper/{mod,session,lock}.rs, with `timeout=2`: the
        // session timeout T = 2 s (the servers of scripts/services grant 1 s to 60 s).
        "zookeeper" => Some(Bounds {
            options: "timeout=2",
            // The core bounds each call by the session timeout T.
            call: s(2000),
            // The client's own verdict "after 7/5 of the session timeout without a server".
            lost: s(2800),
            // Contender nodes are ephemeral: the server deletes them when the session
            // expires, T after it last heard from the client.
            free: s(2000),
            // "A lock's holder may not know it lost the lock until its client notices the
            // session expired: from Suspended on, treat what is held as at risk."
            lost_before_free: false,
            // Member nodes are ephemeral too, and watches are pushed.
            member_gone: s(2000),
            // "a new session is made, the groups joined before are joined again with the
            // same capabilities, and Connected is reported".
            rejoins_after_lost: true,
            // "Every node given up on ... is deleted ..., which waits out connection trouble
            // for as long as the node's session lives": gone by the end of the session at
            // the latest, T after healing.
            orphan_lock: s(2000),
            orphan_place: s(2000),
        }),
        // crates/tooz/src/drivers/memcached/mod.rs, with `timeout=2`: the lock, leader and
        // membership timeouts are 2 s, so the window W = 2 s; keys are stored with TTL
        // ⌈timeout⌉ + 1 s = 3 s and live between 2 s and 3 s (memcached's clock ticks in
        // whole seconds).
        "memcached" => Some(Bounds {
            options: "timeout=2",
            // The core bounds each call by the driver's session timeout, W / 2
            // (socket_timeout, W / 8, makes most calls fail sooner).
            call: s(1000),
            // "Lost (firing every lost()) after window / 2 without a successful one, before
            // the keys it kept alive can expire": heartbeats every W / 4, a failing one
            // fails within socket_timeout, then W / 2: at most W after the cut.
            lost: s(2000),
            // A lock key lives at most TTL = 3 s after the holder's last refresh.
            free: s(3000),
            // The key lives at least lock_timeout (2 s) after the last refresh, which came
            // less than W / 4 before the cut: lost() fires first.
            lost_before_free: true,
            // The member key lives at most 3 s after the last heartbeat; watches poll every
            // poll_interval (50 ms) and readers drop members whose key is gone.
            member_gone: s(3000),
            // "its next heartbeat stores the key again and joins its groups again".
            rejoins_after_lost: true,
            // Nobody renews the orphan's key: it expires after its TTL, 3 s.
            orphan_lock: s(3000),
            // No queue: a waiter retries every lock_poll_interval (10 ms).
            orphan_place: s(10),
        }),
        // crates/tooz/src/drivers/{etcd3,lease_kv}/mod.rs, with `timeout=2`: the session's
        // lease has TTL W = 2 s (etcd's shortest).
        "etcd3" | "etcd3+http" => Some(Bounds {
            options: "timeout=2",
            // The core bounds each call by the session timeout, W / 2 (the default call
            // timeout, W / 8, makes most calls fail sooner).
            call: s(1000),
            // "after half the TTL without a renewal the session is reported lost": the last
            // renewal came at most W / 4 before the cut, the next one fails within W / 8,
            // then W / 2: under W after the cut.
            lost: s(2000),
            // Lock keys live on the lease, which the server expires W after its last renewal
            // (its lessor checks every 0.5 s).
            free: s(2500),
            lost_before_free: true,
            // Member keys live on the lease too, and watches are pushed.
            member_gone: s(2500),
            // "a new lease is granted and the memberships are joined again".
            rejoins_after_lost: true,
            // An acquire or queue place whose reply was lost is undone in the background,
            // tried every 100 ms until the store answers.
            orphan_lock: s(1000),
            orphan_place: s(1000),
        }),
        // crates/tooz/src/drivers/etcd/mod.rs, with `timeout=2`: every key of the
        // coordinator has TTL W = 2 s, renewed every W / 4.
        "etcd" => Some(Bounds {
            options: "timeout=2",
            // The core bounds each call by the session timeout, W / 2 (the default call
            // timeout, W / 8, makes most calls fail sooner).
            call: s(1000),
            // "the session is reported lost after half the TTL without one": under W.
            lost: s(2000),
            // "A key lives TTL after its last renewal (etcd expires keys every 0.5 s)".
            free: s(2500),
            lost_before_free: true,
            // Member keys have the TTL too, and watches long-poll (pushed).
            member_gone: s(2500),
            // The heartbeat joins again where a member key is gone.
            rejoins_after_lost: true,
            // Nobody renews an orphan's key: it expires after its TTL.
            orphan_lock: s(2500),
            // No queue: a waiter tries again whenever the key changes.
            orphan_place: s(100),
        }),
        // crates/tooz/src/drivers/postgresql/mod.rs, with `timeout=2`: heartbeats every
        // T / 4 = 0.5 s, each bounded by T / 4; session timeout T / 2 = 1 s; the server ends a
        // session silent for T = 2 s (`idle_session_timeout`).
        "postgresql" => Some(Bounds {
            options: "timeout=2",
            // The core bounds each call by the session timeout, T / 2.
            call: s(1000),
            // The first failing heartbeat starts at most T / 4 after the cut and fails T / 4
            // later (Suspended); the core reports Lost T / 2 after that.
            lost: s(2000),
            // The server ends the silent session T after its last statement (a heartbeat,
            // less than T / 4 before the cut); a waiter not told of it retries every
            // poll_interval (0.5 s).
            free: s(2500),
            // The server may end the session before the holder's Lost (both about T).
            lost_before_free: false,
            // Member rows die with the session (T); watches re-read every resync_interval (1 s).
            member_gone: s(3000),
            // "connects again, joins again the groups this member had joined".
            rejoins_after_lost: true,
            // An acquire whose reply is lost is undone (unlock) when its call gives up; if that
            // too gets no reply, the session is closed: freed at once after healing, or by
            // the server T after the session fell silent.
            orphan_lock: s(2000),
            // No queue: waiters retry on NOTIFY or every poll_interval (0.5 s).
            orphan_place: s(500),
        }),
        // crates/tooz/src/drivers/mysql/mod.rs, with `timeout=2`: heartbeats every T / 4 =
        // 0.5 s; a statement (heartbeat included) gets no answer within T / 2 = 1 s: the
        // session is ended and made again; session timeout T / 2.
        "mysql" => Some(Bounds {
            options: "timeout=2",
            // The core bounds each call by the session timeout, T / 2.
            call: s(1000),
            // The first heartbeat after the cut (≤ T / 4) gives up after T / 2; the session is
            // then reported lost after one connection attempt bounded by T / 4.
            lost: s(2000),
            // The server ends a connection silent for `wait_timeout` = T after its last
            // statement (a heartbeat, less than T / 4 before the cut); waiters, blocked in
            // GET_LOCK on the server, get the lock at once.
            free: s(2000),
            // Both about T after the cut.
            lost_before_free: false,
            // Member rows die with the session (T); watches re-read every resync_interval (1 s).
            member_gone: s(3000),
            // "connects again (...), joins its groups again and reports Connected".
            rejoins_after_lost: true,
            // An acquire whose reply is lost ends its session (no answer within T / 2).
            orphan_lock: s(2000),
            // No queue: waiters wait server-side, woken at the release.
            orphan_place: s(500),
        }),
        // crates/tooz/src/drivers/consul/mod.rs, with `ttl=10&lock_delay=0`: the session's
        // TTL is W = 10 s (Consul's shortest), renewed every W / 4; calls time out after
        // W / 8 (operation_timeout's default); the session timeout is W / 2. No lock-delay,
        // so that `free` is the session's end alone (with it, add the lock-delay).
        "consul" => Some(Bounds {
            options: "ttl=10&lock_delay=0",
            // "operation_timeout: TTL / 8": the first request on a dead connection fails
            // within 1.25 s.
            call: s(1250),
            // The last renewal came at most W / 4 before the cut, the next one fails within
            // W / 8, and the session is Lost W / 2 later: at most 7W / 8 after the cut.
            lost: s(8750),
            // "Consul ends a session no sooner than its TTL after the last renewal, and may
            // take up to twice the TTL": 2W after the last renewal, which came before the cut.
            free: s(20000),
            // Lost at most 7W / 8 after the last renewal, the session ends no sooner than W
            // after it.
            lost_before_free: true,
            // Member keys are held by the session (deleted when it ends, `Behavior=delete`),
            // and watches are blocking queries (pushed).
            member_gone: s(20000),
            // "creates a new session and joins its groups again, without a restart".
            rejoins_after_lost: true,
            // An acquire whose reply was lost is undone in the background, tried every
            // 100 ms until Consul answers.
            orphan_lock: s(1500),
            // No queue: a waiter tries again whenever the key changes.
            orphan_place: s(100),
        }),
        _ => None,
    }
}
