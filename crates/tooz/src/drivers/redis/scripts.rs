//! The Lua scripts: every multi-key operation runs as one script, so it is atomic on the
//! server and costs one round trip.
//!
//! Group scripts keep Python tooz's layout and answers (`create_group`, `delete_group` and
//! `update_capabilities` answer its codes), and additionally publish exact membership events
//! and garbage-collect members whose beat key is gone. Lock scripts keep redis-py's lock
//! semantics on the lock key (`SET NX PX` with a token; release = compare token then `DEL`;
//! refresh = compare token then `PEXPIRE`) and maintain our fencing counter, holder record and
//! waiter queue in the same step.

use std::sync::OnceLock;

use redis::{Cmd, Script};

/// Makes writes after `TIME` legal on Redis 3.2 to 4.x (a no-op since 5.0).
const EFFECTS: &str = "if redis.replicate_commands then redis.replicate_commands() end\n";

/// Deletes `names` fields from hash `key` in chunks (Lua's `unpack` has a stack limit).
const HDEL_CHUNKED: &str = r#"
local function hdel_all(key, names)
  local i = 1
  while i <= #names do
    local last = math.min(i + 499, #names)
    redis.call('HDEL', key, unpack(names, i, last))
    i = last + 1
  end
end
"#;

/// KEYS: group hash, group set. ARGV: group id.
const CREATE_GROUP: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[1], '__created__', '1')
return 1
"#;

/// KEYS: group hash, group set, joined hash. ARGV: group id, beat prefix, group channel,
/// joined-field prefix. Members whose beat key is gone do not count (they are removed).
const DELETE_GROUP: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 0 then
  return -2
end
local fields = redis.call('HKEYS', KEYS[1])
local dead = {}
for _, member in ipairs(fields) do
  if member ~= '__created__' then
    if redis.call('EXISTS', ARGV[2] .. member) == 1 then
      return -3
    end
    table.insert(dead, member)
  end
end
if redis.call('SREM', KEYS[2], ARGV[1]) == 0 then
  return -4
end
redis.call('DEL', KEYS[1])
for _, member in ipairs(dead) do
  redis.call('HDEL', KEYS[3], ARGV[4] .. member)
end
redis.call('PUBLISH', ARGV[3], 'D')
return 1
"#;

/// KEYS: group hash, joined hash. ARGV: member, capabilities, group channel, joined field,
/// join time. Never overwrites an existing member (Python tooz's join does).
const JOIN: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then
  return 0
end
redis.call('HSET', KEYS[2], ARGV[4], ARGV[5])
redis.call('PUBLISH', ARGV[3], 'J' .. ARGV[1])
return 1
"#;

/// KEYS: group hash, joined hash. ARGV: member, group channel, joined field.
const LEAVE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then
  return -2
end
redis.call('HDEL', KEYS[2], ARGV[3])
redis.call('PUBLISH', ARGV[2], 'L' .. ARGV[1])
return 1
"#;

/// KEYS: group hash, joined hash. ARGV: beat prefix, own member id, group channel,
/// joined-field prefix, `1` to return capabilities too.
///
/// Answers -1 if the group does not exist, else the live members (each followed by its
/// capabilities when asked). Members whose beat key is gone (but never the caller) are
/// removed, and their leave is published.
const MEMBERS: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
local with_caps = ARGV[5] == '1'
local names = {}
local caps = {}
if with_caps then
  local flat = redis.call('HGETALL', KEYS[1])
  for i = 1, #flat, 2 do
    if flat[i] ~= '__created__' then
      table.insert(names, flat[i])
      table.insert(caps, flat[i + 1])
    end
  end
else
  for _, name in ipairs(redis.call('HKEYS', KEYS[1])) do
    if name ~= '__created__' then
      table.insert(names, name)
    end
  end
end
local out = {}
local dead = {}
local i = 1
while i <= #names do
  local last = math.min(i + 499, #names)
  local beats = {}
  for j = i, last do
    table.insert(beats, ARGV[1] .. names[j])
  end
  local alive = redis.call('MGET', unpack(beats))
  for j = i, last do
    if alive[j - i + 1] or names[j] == ARGV[2] then
      table.insert(out, names[j])
      if with_caps then
        table.insert(out, caps[j])
      end
    else
      table.insert(dead, names[j])
    end
  end
  i = last + 1
end
if #dead > 0 then
  hdel_all(KEYS[1], dead)
  local fields = {}
  for _, name in ipairs(dead) do
    table.insert(fields, ARGV[4] .. name)
    redis.call('PUBLISH', ARGV[3], 'L' .. name)
  end
  hdel_all(KEYS[2], fields)
end
return out
"#;

/// KEYS: group hash, the member's beat key, joined hash. ARGV: member, own member id, group
/// channel, joined field. Answers -1 (no group), -2 (not a live member) or
/// `{capabilities, PTTL of the beat key, join time or nil}`.
const MEMBER: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
local caps = redis.call('HGET', KEYS[1], ARGV[1])
if not caps then
  return -2
end
local ttl = redis.call('PTTL', KEYS[2])
if ttl == -2 and ARGV[1] ~= ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[3], ARGV[4])
  redis.call('PUBLISH', ARGV[3], 'L' .. ARGV[1])
  return -2
end
return {caps, ttl, redis.call('HGET', KEYS[3], ARGV[4])}
"#;

/// Python tooz's `update_capabilities` script. KEYS: group hash. ARGV: member, capabilities.
const UPDATE_CAPABILITIES: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  return -2
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"#;

/// Bumps the epoch to max(epoch + 1, now in ms since the base).
const BUMP: &str = r#"
local function bump(epoch, base)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - base
  return math.max(epoch + 1, now)
end
local function fmt(n)
  return string.format('%.0f', n)
end
"#;

/// The waiter queue of a lock (KEYS[5]: tokens by arrival, KEYS[6]: the same by expiry).
/// `queue_now` reads the server clock; `enqueue` adds or refreshes ARGV[1] with a place that
/// lives ARGV[10] ms (an existing place keeps its arrival); `queue_head` drops expired places
/// and answers the first live token and its expiry.
const QUEUE: &str = r#"
local function queue_now()
  local t = redis.call('TIME')
  local s, us = tonumber(t[1]), tonumber(t[2])
  return s * 1000 + math.floor(us / 1000), string.format('%.0f', s * 1000000 + us)
end
local function enqueue(lease)
  local ms, us = queue_now()
  redis.call('ZADD', KEYS[5], 'NX', us, ARGV[1])
  redis.call('ZADD', KEYS[6], string.format('%.0f', ms + lease), ARGV[1])
  for _, key in ipairs({KEYS[5], KEYS[6]}) do
    if redis.call('PTTL', key) < lease then
      redis.call('PEXPIRE', key, lease)
    end
  end
end
local function queue_head()
  local ms = queue_now()
  local dead = redis.call('ZRANGEBYSCORE', KEYS[6], '-inf', ms, 'LIMIT', 0, 100)
  if #dead > 0 then
    redis.call('ZREM', KEYS[5], unpack(dead))
    redis.call('ZREM', KEYS[6], unpack(dead))
  end
  for _ = 1, 100 do
    local head = redis.call('ZRANGE', KEYS[5], 0, 0)[1]
    if not head then
      return nil, 0
    end
    local expiry = redis.call('ZSCORE', KEYS[6], head)
    if expiry then
      return head, tonumber(expiry) - ms
    end
    redis.call('ZREM', KEYS[5], head)
  end
  return nil, 0
end
"#;

/// KEYS: lock key, fencing hash, holders hash, epoch hash, queue by arrival, queue by expiry.
/// ARGV: token, TTL in ms, lock name, session id, member, the master's run id, session
/// channel prefix, epoch base, counter limit, lifetime in ms of a place in the queue (`0`:
/// do not queue, a try).
///
/// Answers `{1, epoch, counter}` when acquired (again, if this token already holds it: a
/// retried attempt), else `{0, ms after which to try again}`: the PTTL of the lock key, or
/// while the lock is free but another token heads the queue, the remaining life of its place.
/// A busy attempt with a lifetime queues (or keeps its place). A stale holder record of ours
/// for another token means that holder's key expired: it is told on its session channel.
/// When nobody waits, the queue costs one `EXISTS`.
const ACQUIRE: &str = r#"
local lease = tonumber(ARGV[10])
local current = redis.call('GET', KEYS[1])
if current and current ~= ARGV[1] then
  if lease > 0 then
    enqueue(lease)
  end
  return {0, redis.call('PTTL', KEYS[1])}
end
if redis.call('EXISTS', KEYS[5]) == 1 then
  local head, left = queue_head()
  if head and head ~= ARGV[1] and not current then
    if lease > 0 then
      enqueue(lease)
    end
    return {0, math.max(1, left)}
  end
  redis.call('ZREM', KEYS[5], ARGV[1])
  redis.call('ZREM', KEYS[6], ARGV[1])
end
if current then
  local rec = redis.call('HGET', KEYS[3], ARGV[3])
  if rec then
    local _, _, n, e, c = string.find(rec, '^(%S+) %S+ (%d+) (%d+) ')
    if n == ARGV[1] then
      return {1, tonumber(e), tonumber(c)}
    end
  end
  return {1, 0, 0}
end
local previous = redis.call('HGET', KEYS[3], ARGV[3])
if previous then
  local _, _, n, s = string.find(previous, '^(%S+) (%S+) ')
  if n and n ~= ARGV[1] then
    redis.call('PUBLISH', ARGV[7] .. s, 'E' .. n)
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local base = tonumber(ARGV[8])
local meta = redis.call('HMGET', KEYS[4], 'run_id', 'epoch')
local epoch = tonumber(meta[2]) or 0
if meta[1] ~= ARGV[6] or epoch == 0 then
  epoch = bump(epoch, base)
  redis.call('HMSET', KEYS[4], 'run_id', ARGV[6], 'epoch', fmt(epoch))
end
local counter = redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
if counter > tonumber(ARGV[9]) then
  epoch = bump(epoch, base)
  redis.call('HMSET', KEYS[4], 'run_id', ARGV[6], 'epoch', fmt(epoch))
  redis.call('HSET', KEYS[2], ARGV[3], 1)
  counter = 1
end
redis.call('HSET', KEYS[3], ARGV[3],
  ARGV[1] .. ' ' .. ARGV[4] .. ' ' .. fmt(epoch) .. ' ' .. fmt(counter) .. ' ' .. ARGV[5])
return {1, epoch, counter}
"#;

/// KEYS: lock key, holders hash. ARGV: token, lock name, lock channel. redis-py's release
/// (compare then `DEL`), plus our holder record and the release announcement.
///
/// While the key holds our token the holder record can only be ours (it is written with the
/// key), so it is deleted without being read.
const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  local rec = redis.call('HGET', KEYS[2], ARGV[2])
  if rec and string.sub(rec, 1, #ARGV[1] + 1) == ARGV[1] .. ' ' then
    redis.call('HDEL', KEYS[2], ARGV[2])
  end
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('HDEL', KEYS[2], ARGV[2])
redis.call('PUBLISH', ARGV[3], 'R')
return 1
"#;

/// KEYS: queue by arrival, queue by expiry, lock key. ARGV: token, lock channel. Gives up a
/// place in the queue; if the lock is free, the next waiter is told.
const DEQUEUE: &str = r#"
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if removed == 1 and redis.call('EXISTS', KEYS[3]) == 0 then
  redis.call('PUBLISH', ARGV[2], 'R')
end
return removed
"#;

/// KEYS: lock key. ARGV: token, TTL in ms. redis-py's reacquire.
const REFRESH: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"#;

/// KEYS: lock key, holders hash. ARGV: lock name, lock channel, session channel prefix.
const BREAK: &str = r#"
local current = redis.call('GET', KEYS[1])
if not current then
  return 0
end
redis.call('DEL', KEYS[1])
local rec = redis.call('HGET', KEYS[2], ARGV[1])
if rec then
  local _, _, n, s = string.find(rec, '^(%S+) (%S+) ')
  if n == current then
    redis.call('HDEL', KEYS[2], ARGV[1])
    redis.call('PUBLISH', ARGV[3] .. s, 'B' .. n)
  end
end
redis.call('PUBLISH', ARGV[2], 'R')
return 1
"#;

/// KEYS: lock key, holders hash. ARGV: lock name. Answers 0 (free), `{1, member}` or
/// `{2, token}` (held by a client that records no holder, such as Python tooz).
const HOLDER: &str = r#"
local current = redis.call('GET', KEYS[1])
if not current then
  return 0
end
local rec = redis.call('HGET', KEYS[2], ARGV[1])
if rec then
  local _, stop, n = string.find(rec, '^(%S+) %S+ %d+ %d+ ')
  if n == current then
    return {1, string.sub(rec, stop + 1)}
  end
end
return {2, current}
"#;

/// One script: its code and its digest.
pub(super) struct Lua {
    code: String,
    script: Script,
}

impl Lua {
    fn new(code: String) -> Lua {
        Lua {
            script: Script::new(&code),
            code,
        }
    }

    /// `EVALSHA` of this script with `keys` and `args`.
    pub fn evalsha(&self, keys: &[&[u8]], args: &[&[u8]]) -> Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.script.get_hash()).arg(keys.len());
        for key in keys {
            cmd.arg(*key);
        }
        for arg in args {
            cmd.arg(*arg);
        }
        cmd
    }

    /// `SCRIPT LOAD` of this script.
    pub fn load(&self) -> Cmd {
        let mut cmd = redis::cmd("SCRIPT");
        cmd.arg("LOAD").arg(self.code.as_str());
        cmd
    }
}

/// Every script of the driver.
pub(super) struct Scripts {
    pub create_group: Lua,
    pub delete_group: Lua,
    pub join: Lua,
    pub leave: Lua,
    pub members: Lua,
    pub member: Lua,
    pub update_capabilities: Lua,
    pub acquire: Lua,
    pub release: Lua,
    pub dequeue: Lua,
    pub refresh: Lua,
    pub break_lock: Lua,
    pub holder: Lua,
}

impl Scripts {
    /// The scripts, built once per process.
    pub fn get() -> &'static Scripts {
        static SCRIPTS: OnceLock<Scripts> = OnceLock::new();
        SCRIPTS.get_or_init(|| Scripts {
            create_group: Lua::new(CREATE_GROUP.into()),
            delete_group: Lua::new(DELETE_GROUP.into()),
            join: Lua::new(JOIN.into()),
            leave: Lua::new(LEAVE.into()),
            members: Lua::new(format!("{HDEL_CHUNKED}{MEMBERS}")),
            member: Lua::new(MEMBER.into()),
            update_capabilities: Lua::new(UPDATE_CAPABILITIES.into()),
            acquire: Lua::new(format!("{EFFECTS}{BUMP}{QUEUE}{ACQUIRE}")),
            release: Lua::new(RELEASE.into()),
            dequeue: Lua::new(DEQUEUE.into()),
            refresh: Lua::new(REFRESH.into()),
            break_lock: Lua::new(BREAK.into()),
            holder: Lua::new(HOLDER.into()),
        })
    }

    /// Every script, to load them when connecting.
    pub fn all(&self) -> [&Lua; 13] {
        [
            &self.create_group,
            &self.delete_group,
            &self.join,
            &self.leave,
            &self.members,
            &self.member,
            &self.update_capabilities,
            &self.acquire,
            &self.release,
            &self.dequeue,
            &self.refresh,
            &self.break_lock,
            &self.holder,
        ]
    }
}
