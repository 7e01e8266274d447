//! The Redis store: one Redis shared by any number of server nodes, so a
//! client whose node dies resumes its session on another with nothing lost
//! and nothing twice, and clients on different nodes share one room.
//!
//! Structures, under the prefix `longconn:MODE:`:
//! - `meta`, a hash: the history's `epoch`, the room's next offset
//!   (`room_next`), the next client number (`next_client`). Its absence
//!   means Redis lost everything (it restarted empty): the next node to
//!   notice starts a new epoch, and every client is told it did not recover.
//! - `room`, a stream of the room's lines, one entry per append (a read's
//!   lines from one member), its id the last line's offset (`OFFSET-0`),
//!   holding the first offset, the author, the time and the lines (one row
//!   of length-prefixed lines, as `Row` keeps messages): appended by any node,
//!   read by every node's feed with `XREAD BLOCK` from the offset it has,
//!   so every node shows one order, and a feed that fell behind (or a node
//!   that started late) reads on from where it is; trimmed to about the
//!   history window (`XTRIM MINID ~`).
//! - `s:ID`, a hash per session: its name, number, room base, `received`
//!   (the last inbound message stored), `client_acked` (the last outbound
//!   one the client acknowledged), the `epoch` it belongs to, and its
//!   `owner` generation.
//! - `in:ID`, a stream per session (echo and sink): one entry per commit,
//!   id `LAST_SEQ-0`, holding the first sequence number and the row of
//!   messages; trimmed to what a restart replays (echo: after `client_acked`)
//!   or the history window (sink).
//!
//! Every change is a Lua script, run atomically: an append checks the
//! session's owner generation and the expected sequence number first, and
//! answers `fenced` (another node took the session over), `duplicate` (it
//! has these numbers already: a retry whose first answer was lost) or
//! `lost` (no `meta`). A takeover (`HINCRBY owner`) fences every earlier
//! owner at once, alive, stuck or dead: their later appends fail, so what
//! the takeover read is final. A group of changes goes in one pipeline (one
//! round trip); its answers come back before anything is acknowledged, so
//! nothing is acknowledged before Redis has it under its persistence
//! setting (with `appendfsync always`, on disk).
//!
//! The client: redis-rs's blocking connection, on the commit loop's
//! thread and the feed's own, each with read and write timeouts. Its
//! connection manager (async) reconnects and can resend a command whose
//! answer was lost; here nothing is resent by the crate: when a pipeline
//! fails this store reconnects and sends the whole group again itself,
//! which the scripts make safe (a repeated append is `duplicate`, a
//! repeated session record the same record), except the lines of
//! best-effort members and the server's join notices, which may then be
//! shown twice. While Redis is unreachable the commit loop waits here:
//! nothing is acknowledged (the node says so once), connections stop
//! reading once their sessions' unstored messages reach their bound, and
//! everything goes on when Redis returns.

use std::time::Duration;

use ::redis::{Client, Connection, ConnectionLike, Script, Value};
use bytes::Bytes;

use super::row::split_messages;
use super::{
    unacknowledged_echo, Change, Committed, Counted, Feed, FeedBatch, Loaded, LoadedSession, Row, SessionRecord, Store,
    TakeOver,
};
use crate::history::{Entry, History, Window};
use crate::ids::{random_u64, SessionId};
use crate::mode::Mode;
use longconn_core::protocol::FrameType;

/// How long connecting to Redis may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a command may go unanswered before the link counts as broken.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// The pause between attempts while Redis is unreachable.
const RETRY: Duration = Duration::from_millis(100);
/// How long a feed read waits for new lines, and how many it takes at once.
const FEED_BLOCK: Duration = Duration::from_millis(1000);
const FEED_COUNT: usize = 4096;
/// Client numbers each node reserves at start (names and authors are then
/// unique across nodes).
const CLIENT_NUMBERS: u64 = 1_000_000;

/// Creates `meta` if it is missing (a new epoch; the room of an older one
/// is dropped); returns epoch, next offset and next client number.
const INIT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', ARGV[1], 'room_next', '1', 'next_client', '1')
end
return redis.call('HMGET', KEYS[1], 'epoch', 'room_next', 'next_client')
";

/// Checks a session's owner and the sequence numbers `first`..`last`
/// against what it has (`behind`: Redis lost some of its messages, which
/// this node had stored); stores its new counters. Shared by both appends.
const CHECK_SESSION: &str = r"
local function check_session(key, owner, first, last, acked)
  local s = redis.call('HMGET', key, 'owner', 'received', 'client_acked')
  if s[1] ~= owner then return 'fenced' end
  local received = tonumber(s[2])
  if last <= received then return 'duplicate' end
  if first ~= received + 1 then return 'behind' end
  acked = math.max(acked, tonumber(s[3]))
  redis.call('HSET', key, 'received', string.format('%d', last), 'client_acked', string.format('%d', acked))
  return nil
end
";

/// KEYS: meta, session, inbound; ARGV: owner, first, count, client_acked,
/// keep_after, row. A session's messages (echo, sink).
const APPEND_INBOUND: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 'lost' end
local first = tonumber(ARGV[2])
local last = first + tonumber(ARGV[3]) - 1
local refused = check_session(KEYS[2], ARGV[1], first, last, tonumber(ARGV[4]))
if refused then return refused end
redis.call('XADD', KEYS[3], string.format('%d-0', last), 'f', ARGV[2], 'r', ARGV[6])
local keep_after = tonumber(ARGV[5])
if keep_after > 0 then redis.call('XTRIM', KEYS[3], 'MINID', string.format('%d-0', keep_after + 1)) end
return 'ok'
";

/// KEYS: meta, room, session (meta again when none); ARGV: owner ('' for
/// none), first, client_acked, author, at, lines kept, count, the lines (a
/// row: each a length word and its bytes). One stream entry for them all,
/// its id their last offset. Returns the first line's offset.
const APPEND_LINES: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 'lost' end
local n = tonumber(ARGV[7])
if ARGV[1] ~= '' then
  local first = tonumber(ARGV[2])
  local refused = check_session(KEYS[3], ARGV[1], first, first + n - 1, tonumber(ARGV[3]))
  if refused then return refused end
end
local next = tonumber(redis.call('HGET', KEYS[1], 'room_next'))
local last = next + n - 1
redis.call('XADD', KEYS[2], string.format('%d-0', last), 'f', string.format('%d', next), 'a', ARGV[4], 't', ARGV[5],
  'l', ARGV[8])
redis.call('HSET', KEYS[1], 'room_next', string.format('%d', last + 1))
local keep_from = last + 1 - tonumber(ARGV[6])
if keep_from > 1 then redis.call('XTRIM', KEYS[2], 'MINID', '~', string.format('%d-0', keep_from)) end
return next
";

/// KEYS: meta, session, inbound; ARGV: name, number, base, owner.
const NEW_SESSION: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 'lost' end
redis.call('DEL', KEYS[3])
redis.call('HSET', KEYS[2], 'epoch', redis.call('HGET', KEYS[1], 'epoch'), 'name', ARGV[1], 'number', ARGV[2],
  'base', ARGV[3], 'received', '0', 'client_acked', '0', 'owner', ARGV[4])
return 'ok'
";

/// KEYS: meta, session, inbound. A new owner generation; the session's
/// fields and its stored messages.
const TAKE_OVER: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 'lost' end
local epoch = redis.call('HGET', KEYS[2], 'epoch')
if not epoch then return 'unknown' end
if epoch ~= redis.call('HGET', KEYS[1], 'epoch') then
  redis.call('DEL', KEYS[2], KEYS[3])
  return 'unknown'
end
local owner = redis.call('HINCRBY', KEYS[2], 'owner', 1)
local fields = redis.call('HMGET', KEYS[2], 'name', 'number', 'base', 'received', 'client_acked')
return {owner, fields, redis.call('XRANGE', KEYS[3], '-', '+')}
";

/// KEYS: meta; ARGV: the epoch seen, a new one, the offset a client has.
/// A new epoch if the room's top is not above that offset. Returns the epoch now.
const NEW_EPOCH: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 'lost' end
local m = redis.call('HMGET', KEYS[1], 'epoch', 'room_next')
if m[1] == ARGV[1] and tonumber(m[2]) <= tonumber(ARGV[3]) then redis.call('HSET', KEYS[1], 'epoch', ARGV[2]) end
return redis.call('HGET', KEYS[1], 'epoch')
";

/// KEYS: meta, session; ARGV: owner, base.
const REBASE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 'lost' end
if redis.call('HGET', KEYS[2], 'owner') ~= ARGV[1] then return 'fenced' end
redis.call('HSET', KEYS[2], 'base', ARGV[2])
return 'ok'
";

/// KEYS: meta, session, inbound; ARGV: owner. Only while still the owner.
const FORGET: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 'lost' end
if redis.call('HGET', KEYS[2], 'owner') ~= ARGV[1] then return 'fenced' end
redis.call('DEL', KEYS[2], KEYS[3])
return 'ok'
";

/// The scripts, loaded into Redis on every connection.
struct Scripts {
    init: Script,
    append_inbound: Script,
    append_lines: Script,
    new_session: Script,
    take_over: Script,
    new_epoch: Script,
    rebase: Script,
    forget: Script,
}

impl Scripts {
    fn new() -> Scripts {
        let checked = |body: &str| Script::new(&format!("{CHECK_SESSION}{body}"));
        Scripts {
            init: Script::new(INIT),
            append_inbound: checked(APPEND_INBOUND),
            append_lines: checked(APPEND_LINES),
            new_session: Script::new(NEW_SESSION),
            take_over: Script::new(TAKE_OVER),
            new_epoch: Script::new(NEW_EPOCH),
            rebase: Script::new(REBASE),
            forget: Script::new(FORGET),
        }
    }

    fn all(&self) -> [&Script; 7] {
        [
            &self.init,
            &self.append_inbound,
            &self.append_lines,
            &self.new_session,
            &self.take_over,
            &self.rebase,
            &self.forget,
        ]
    }
}

/// The keys of one server mode's data.
#[derive(Clone)]
struct Keys {
    prefix: String,
}

impl Keys {
    fn new(mode: Mode) -> Keys {
        Keys { prefix: format!("longconn:{}:", mode.name()) }
    }

    fn meta(&self) -> String {
        format!("{}meta", self.prefix)
    }

    fn room(&self) -> String {
        format!("{}room", self.prefix)
    }

    fn session(&self, id: &SessionId) -> String {
        format!("{}s:{}", self.prefix, hex(id))
    }

    fn inbound(&self, id: &SessionId) -> String {
        format!("{}in:{}", self.prefix, hex(id))
    }
}

fn hex(id: &SessionId) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// A connection with timeouts, the scripts loaded.
fn connect(client: &Client, scripts: Option<&Scripts>, read_timeout: Duration) -> Result<Connection, String> {
    let mut con = client.get_connection_with_timeout(CONNECT_TIMEOUT).map_err(|e| e.to_string())?;
    con.set_read_timeout(Some(read_timeout)).map_err(|e| e.to_string())?;
    con.set_write_timeout(Some(IO_TIMEOUT)).map_err(|e| e.to_string())?;
    for script in scripts.map(Scripts::all).into_iter().flatten() {
        script.load(&mut con).map_err(|e| e.to_string())?;
    }
    Ok(con)
}

/// One script call for a pipeline: `EVALSHA` with its keys and arguments.
fn evalsha(script: &Script, keys: &[&str], args: &[&[u8]]) -> ::redis::Cmd {
    let mut cmd = ::redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(keys.len()).arg(keys);
    for arg in args {
        cmd.arg(*arg);
    }
    cmd
}

/// A reply's text, if it is one.
fn text(value: &Value) -> Option<&str> {
    match value {
        Value::BulkString(bytes) => std::str::from_utf8(bytes).ok(),
        Value::SimpleString(s) => Some(s),
        Value::Okay => Some("OK"),
        _ => None,
    }
}

fn number(value: &Value) -> Option<u64> {
    match value {
        Value::Int(n) => u64::try_from(*n).ok(),
        other => text(other)?.parse().ok(),
    }
}

fn bytes(value: &Value) -> Option<Bytes> {
    match value {
        Value::BulkString(b) => Some(Bytes::copy_from_slice(b)),
        Value::SimpleString(s) => Some(Bytes::copy_from_slice(s.as_bytes())),
        _ => None,
    }
}

/// A stream entry's id (`N-0`) as N, and its fields by name.
fn stream_entry(value: &Value) -> Option<(u64, Vec<(String, Value)>)> {
    let Value::Array(parts) = value else { return None };
    let id = text(parts.first()?)?.split('-').next()?.parse().ok()?;
    let Value::Array(flat) = parts.get(1)? else { return None };
    let fields = flat.chunks(2).filter_map(|kv| Some((text(&kv[0])?.to_string(), kv.get(1)?.clone()))).collect();
    Some((id, fields))
}

fn field<'a>(fields: &'a [(String, Value)], name: &str) -> Option<&'a Value> {
    fields.iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

/// The room lines of a stream entry (one append's), with their offsets.
fn room_lines(value: &Value) -> Vec<(u64, Entry)> {
    let lines = || {
        let (_, fields) = stream_entry(value)?;
        let first = number(field(&fields, "f")?)?;
        let (author, at) = (number(field(&fields, "a")?)?, number(field(&fields, "t")?)?);
        let row = bytes(field(&fields, "l")?)?;
        let lines = split_messages(row).into_iter().enumerate();
        Some(
            lines
                .map(move |(i, line)| (first + i as u64, Entry { author, at, line: line.parts().1.clone() }))
                .collect(),
        )
    };
    lines().unwrap_or_default()
}

/// What Redis keeps, and what a crash can lose, from its persistence
/// settings (`CONFIG GET`), for the node's log.
fn describe_persistence(con: &mut Connection) -> String {
    let get = |con: &mut Connection, name: &str| -> Option<String> {
        let value: Vec<String> = ::redis::cmd("CONFIG").arg("GET").arg(name).query(con).ok()?;
        value.get(1).cloned()
    };
    let (Some(aof), Some(fsync)) = (get(con, "appendonly"), get(con, "appendfsync")) else {
        return "Redis does not show its persistence settings (CONFIG GET refused): what a crash loses is unknown"
            .into();
    };
    let save = get(con, "save").unwrap_or_default();
    let replicas: Option<String> = ::redis::cmd("INFO")
        .arg("replication")
        .query::<String>(con)
        .ok()
        .and_then(|info| info.lines().find_map(|l| l.strip_prefix("connected_slaves:").map(str::to_string)));
    let kept = match (aof.as_str(), fsync.as_str()) {
        ("yes", "always") => "appendonly yes, appendfsync always: every acknowledged message is on disk before its acknowledgement; a crash of Redis or of its machine loses nothing".to_string(),
        ("yes", "everysec") => "appendonly yes, appendfsync everysec: a crash of Redis loses nothing acknowledged; a crash of its machine or a power loss can lose about the last second".to_string(),
        ("yes", _) => format!("appendonly yes, appendfsync {fsync}: the kernel decides when the log reaches the disk; a crash of the machine can lose more than a second"),
        _ if save.is_empty() => "appendonly no and no snapshots: a restart of Redis loses everything (the nodes then start a new epoch)".to_string(),
        _ => format!("appendonly no, snapshots ({save}): a crash of Redis loses everything since the last snapshot"),
    };
    match replicas.filter(|n| n != "0") {
        Some(n) => {
            format!("{kept}; {n} replicas, replicated asynchronously: a failover to one can lose acknowledged messages")
        }
        None => kept,
    }
}

/// The Redis store.
pub struct RedisStore {
    client: Client,
    con: Option<Connection>,
    keys: Keys,
    scripts: Scripts,
    mode: Mode,
    window: Window,
    /// Redis is unreachable (said once, until it answers again).
    failing: bool,
}

/// Connects to Redis at `url`, starts a new epoch if it holds none, and
/// reads the room's recent history. Sessions are not loaded: each is taken
/// over when its client resumes.
pub fn open(url: &str, mode: Mode, window: Window) -> Result<(RedisStore, Loaded), String> {
    let client = Client::open(url).map_err(|e| format!("store {url}: {e}"))?;
    let scripts = Scripts::new();
    let mut con = connect(&client, Some(&scripts), IO_TIMEOUT).map_err(|e| format!("cannot reach {url}: {e}"))?;
    println!("redis {url}: {}", describe_persistence(&mut con));
    let keys = Keys::new(mode);
    let (epoch, room_next, _) = init(&mut con, &scripts, &keys).map_err(|e| format!("store {url}: {e}"))?;
    // A block of client numbers for this node.
    let reserved: u64 = ::redis::cmd("HINCRBY")
        .arg(keys.meta())
        .arg("next_client")
        .arg(CLIENT_NUMBERS)
        .query(&mut con)
        .map_err(|e| format!("store {url}: {e}"))?;
    let next_client = reserved - CLIENT_NUMBERS;
    let mut history = History::new(epoch, room_next, window);
    if mode == Mode::Chat {
        let newest: Vec<Value> = ::redis::cmd("XREVRANGE")
            .arg(keys.room())
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(window.messages)
            .query(&mut con)
            .map_err(|e| format!("store {url}: {e}"))?;
        let lines: Vec<(u64, Entry)> = newest.iter().rev().flat_map(room_lines).collect();
        if let Some((first, _)) = lines.first() {
            history = History::new(epoch, *first, window);
        }
        for (offset, entry) in lines {
            if offset == history.next_offset() {
                history.push(offset, entry);
            }
        }
    }
    let store = RedisStore { client, con: Some(con), keys, scripts, mode, window, failing: false };
    Ok((store, Loaded { history, sessions: Vec::new(), next_client }))
}

/// Runs the `INIT` script: (epoch, next offset, next client number).
fn init(con: &mut Connection, scripts: &Scripts, keys: &Keys) -> Result<(u64, u64, u64), String> {
    let epoch = (random_u64() >> 1).to_string();
    let values: Vec<Option<u64>> =
        scripts.init.key(keys.meta()).key(keys.room()).arg(epoch).invoke(con).map_err(|e| e.to_string())?;
    match values[..] {
        [Some(epoch), Some(next), Some(client)] => Ok((epoch, next, client)),
        _ => Err(format!("{} holds something else", keys.meta())),
    }
}

/// Whose change a pipelined answer is: a session's can be fenced.
enum Answer {
    Session(SessionId),
    Other,
}

impl RedisStore {
    /// Runs `commands` as one pipeline, reconnecting and sending them again
    /// until Redis answers every one without an error (it may be down, cut
    /// off, loading or refusing writes: meanwhile nothing is acknowledged).
    fn run(&mut self, commands: &[::redis::Cmd]) -> Result<Vec<Value>, String> {
        let mut pipeline = ::redis::pipe();
        for cmd in commands {
            pipeline.add_command(cmd.clone());
        }
        let packed = pipeline.get_packed_pipeline();
        loop {
            let attempt = match self.connection() {
                Ok(con) => con.req_packed_commands(&packed, 0, commands.len()).map_err(|e| e.to_string()),
                Err(e) => Err(e),
            };
            let error = match attempt {
                Ok(values) => match values.iter().find_map(|v| match v {
                    Value::ServerError(e) => Some(::redis::RedisError::from(e.clone())),
                    _ => None,
                }) {
                    None => {
                        if self.failing {
                            println!("store: Redis answers again; acknowledging again");
                            self.failing = false;
                        }
                        return Ok(values);
                    }
                    // NOSCRIPT (flushed scripts), LOADING, READONLY, OOM,
                    // MISCONF: an outage, whatever it says (and it says it).
                    Some(e) => e.to_string(),
                },
                Err(e) => e,
            };
            if !self.failing {
                println!("store: Redis is unavailable ({error}); nothing is acknowledged until it returns");
                self.failing = true;
            }
            self.con = None;
            std::thread::sleep(RETRY);
        }
    }

    fn connection(&mut self) -> Result<&mut Connection, String> {
        if self.con.is_none() {
            self.con = Some(connect(&self.client, Some(&self.scripts), IO_TIMEOUT)?);
        }
        Ok(self.con.as_mut().expect("connected"))
    }

    /// Starts a new epoch after Redis lost everything; returns it.
    fn begin_epoch(&mut self) -> Result<u64, String> {
        loop {
            if let Err(e) = self.connection() {
                println!("store: Redis is unavailable ({e}); nothing is acknowledged until it returns");
                std::thread::sleep(RETRY);
                continue;
            }
            let RedisStore { con, scripts, keys, .. } = self;
            match init(con.as_mut().expect("connected"), scripts, keys) {
                Ok((epoch, _, _)) => return Ok(epoch),
                Err(e) if e.contains("holds something else") => return Err(e),
                Err(_) => {
                    self.con = None;
                    std::thread::sleep(RETRY);
                }
            }
        }
    }

    fn counted_args(&self, counted: &Counted) -> (String, String, String) {
        (counted.owner.to_string(), counted.first_seq.to_string(), counted.client_acked.to_string())
    }
}

impl Store for RedisStore {
    fn commit(&mut self, changes: &[Change]) -> Result<Committed, String> {
        let meta = self.keys.meta();
        let room = self.keys.room();
        let mut commands = Vec::with_capacity(changes.len());
        let mut answers = Vec::with_capacity(changes.len());
        for change in changes {
            match change {
                Change::Lines { author, at, lines, counted } => {
                    let session_key = counted.as_ref().map_or_else(|| meta.clone(), |c| self.keys.session(&c.id));
                    let (owner, first, acked) =
                        counted.as_ref().map_or_else(Default::default, |c| self.counted_args(c));
                    let (author, at, most) = (author.to_string(), at.to_string(), self.window.messages.to_string());
                    let count = lines.len().to_string();
                    let mut row = Row::default();
                    for line in lines {
                        row.push(FrameType::Data, line);
                    }
                    let args: [&[u8]; 8] = [
                        owner.as_bytes(),
                        first.as_bytes(),
                        acked.as_bytes(),
                        author.as_bytes(),
                        at.as_bytes(),
                        most.as_bytes(),
                        count.as_bytes(),
                        row.bytes(),
                    ];
                    commands.push(evalsha(&self.scripts.append_lines, &[&meta, &room, &session_key], &args));
                    answers.push(counted.as_ref().map_or(Answer::Other, |c| Answer::Session(c.id)));
                }
                Change::Inbound { counted, rows } => {
                    let row: Vec<u8> = rows.iter().flat_map(|r| r.bytes().iter().copied()).collect();
                    let keep_after = match self.mode {
                        // What a restart replays: what the client has not acknowledged.
                        Mode::Echo => counted.client_acked,
                        _ => counted.last_seq().saturating_sub(self.window.messages as u64),
                    };
                    let (owner, first, acked) = self.counted_args(counted);
                    let (count, keep_after) = (counted.count.to_string(), keep_after.to_string());
                    let keys = [meta.as_str(), &self.keys.session(&counted.id), &self.keys.inbound(&counted.id)];
                    let args: [&[u8]; 6] = [
                        owner.as_bytes(),
                        first.as_bytes(),
                        count.as_bytes(),
                        acked.as_bytes(),
                        keep_after.as_bytes(),
                        &row,
                    ];
                    commands.push(evalsha(&self.scripts.append_inbound, &keys, &args));
                    answers.push(Answer::Session(counted.id));
                }
                Change::NewSession { record, .. } => {
                    let keys = [meta.as_str(), &self.keys.session(&record.id), &self.keys.inbound(&record.id)];
                    let (number, base, owner) =
                        (record.number.to_string(), record.base.to_string(), record.owner.to_string());
                    let args: [&[u8]; 4] =
                        [record.name.as_bytes(), number.as_bytes(), base.as_bytes(), owner.as_bytes()];
                    commands.push(evalsha(&self.scripts.new_session, &keys, &args));
                    answers.push(Answer::Other);
                }
                Change::Rebase { id, owner, base } => {
                    let (owner, base) = (owner.to_string(), base.to_string());
                    let keys = [meta.as_str(), &self.keys.session(id)];
                    commands.push(evalsha(&self.scripts.rebase, &keys, &[owner.as_bytes(), base.as_bytes()]));
                    answers.push(Answer::Other);
                }
                Change::Forget { ids } => {
                    for (id, owner) in ids {
                        let keys = [meta.as_str(), &self.keys.session(id), &self.keys.inbound(id)];
                        commands.push(evalsha(&self.scripts.forget, &keys, &[owner.to_string().as_bytes()]));
                        answers.push(Answer::Other);
                    }
                }
                // The room is trimmed as lines are appended.
                Change::TrimRoom { .. } => {}
            }
        }
        let mut committed = Committed::default();
        if commands.is_empty() {
            return Ok(committed);
        }
        let values = self.run(&commands)?;
        let mut lost = false;
        for (value, answer) in values.iter().zip(&answers) {
            // Lines are shown by the feed: their offsets are not needed here.
            match (text(value), answer) {
                (Some("lost"), _) => lost = true,
                (Some("fenced"), Answer::Session(id)) => committed.fenced.push(*id),
                (Some("behind"), Answer::Session(id)) => {
                    // Redis lost writes it had answered (its persistence
                    // setting allows it): the session's numbering is broken here.
                    println!("store: Redis lost messages of session {} it had stored; the session ends", hex(id));
                    committed.fenced.push(*id);
                }
                _ => {}
            }
        }
        if lost {
            committed.lost = Some(self.begin_epoch()?);
        }
        Ok(committed)
    }

    fn maintain(&mut self, _idle: bool) {}

    fn keeps_inbound(&self) -> bool {
        true
    }

    fn shared(&self) -> bool {
        true
    }

    fn take_over(&mut self, id: SessionId) -> Result<TakeOver, String> {
        let keys = [self.keys.meta(), self.keys.session(&id), self.keys.inbound(&id)];
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let command = evalsha(&self.scripts.take_over, &keys, &[]);
        let value = self.run(&[command])?.pop().unwrap_or(Value::Nil);
        match text(&value) {
            Some("lost") => return Ok(TakeOver::Lost { epoch: self.begin_epoch()? }),
            Some("unknown") => return Ok(TakeOver::Unknown),
            _ => {}
        }
        let malformed = || format!("the takeover of session {} answered {value:?}", hex(&id));
        let Value::Array(parts) = &value else { return Err(malformed()) };
        let (Some(owner), Some(Value::Array(fields)), Some(Value::Array(entries))) =
            (parts.first().and_then(number), parts.get(1), parts.get(2))
        else {
            return Err(malformed());
        };
        let numbers: Vec<u64> = fields.iter().skip(1).filter_map(number).collect();
        let (Some(name), &[client_number, base, received, client_acked]) =
            (fields.first().and_then(text), &numbers[..])
        else {
            return Err(malformed());
        };
        let records = entries
            .iter()
            .filter_map(stream_entry)
            .filter_map(|(_, fields)| Some((number(field(&fields, "f")?)?, bytes(field(&fields, "r")?)?)));
        let (echo_first, echo) = match self.mode {
            Mode::Echo => unacknowledged_echo(records, received, client_acked),
            _ => (received + 1, Vec::new()),
        };
        let record =
            SessionRecord { id, name: name.to_string(), number: client_number, base, received, client_acked, owner };
        Ok(TakeOver::Taken(LoadedSession { record, echo_first, echo }))
    }

    fn new_epoch(&mut self, seen: u64, claimed: u64) -> Result<u64, String> {
        let (seen, proposed, claimed) = (seen.to_string(), (random_u64() >> 1).to_string(), claimed.to_string());
        let args: [&[u8]; 3] = [seen.as_bytes(), proposed.as_bytes(), claimed.as_bytes()];
        let command = evalsha(&self.scripts.new_epoch, &[&self.keys.meta()], &args);
        let value = self.run(&[command])?.pop().unwrap_or(Value::Nil);
        match text(&value) {
            Some("lost") => self.begin_epoch(),
            _ => number(&value).ok_or_else(|| format!("a new epoch answered {value:?}")),
        }
    }

    fn feed(&mut self) -> Option<Box<dyn Feed>> {
        (self.mode == Mode::Chat).then(|| {
            Box::new(RedisFeed { client: self.client.clone(), con: None, keys: self.keys.clone(), window: self.window })
                as Box<dyn Feed>
        })
    }
}

/// Reads the room stream as every node appends to it.
struct RedisFeed {
    client: Client,
    con: Option<Connection>,
    keys: Keys,
    window: Window,
}

impl Feed for RedisFeed {
    fn read(&mut self, epoch: u64, next: u64) -> Result<FeedBatch, String> {
        let result = self.read_once(epoch, next);
        if result.is_err() {
            self.con = None;
        }
        result
    }
}

impl RedisFeed {
    fn read_once(&mut self, epoch: u64, next: u64) -> Result<FeedBatch, String> {
        if self.con.is_none() {
            self.con = Some(connect(&self.client, None, FEED_BLOCK + IO_TIMEOUT)?);
        }
        let con = self.con.as_mut().expect("connected");
        let (now, top, read): (Option<u64>, Option<u64>, Value) = ::redis::pipe()
            .cmd("HGET")
            .arg(self.keys.meta())
            .arg("epoch")
            .cmd("HGET")
            .arg(self.keys.meta())
            .arg("room_next")
            .cmd("XREAD")
            .arg("COUNT")
            .arg(FEED_COUNT)
            .arg("BLOCK")
            .arg(FEED_BLOCK.as_millis() as u64)
            .arg("STREAMS")
            .arg(self.keys.room())
            .arg(format!("{}-0", next.saturating_sub(1)))
            .query(con)
            .map_err(|e| e.to_string())?;
        let now = match (now, top) {
            (Some(now), Some(top)) if now == epoch && top < next => {
                // Redis lost lines this node has shown (it restarted
                // without its newest writes): their offsets must not name
                // other lines under this epoch.
                let proposed = (random_u64() >> 1).to_string();
                let began: u64 = Script::new(NEW_EPOCH)
                    .key(self.keys.meta())
                    .arg(epoch.to_string())
                    .arg(proposed)
                    .arg(next - 1)
                    .invoke(con)
                    .map_err(|e| e.to_string())?;
                println!(
                    "store: Redis lost room lines up to offset {} (its top is {top}); history {began} begins",
                    next - 1
                );
                Some(began)
            }
            (now, _) => now,
        };
        match now {
            // Redis lost everything and no node has begun a new epoch yet.
            None => Ok(FeedBatch { epoch, lines: Vec::new() }),
            Some(now) if now != epoch => {
                // A new epoch: its lines from the start.
                let first: Vec<Value> = ::redis::cmd("XRANGE")
                    .arg(self.keys.room())
                    .arg("-")
                    .arg("+")
                    .arg("COUNT")
                    .arg(self.window.messages.min(FEED_COUNT))
                    .query(con)
                    .map_err(|e| e.to_string())?;
                Ok(FeedBatch { epoch: now, lines: first.iter().flat_map(room_lines).collect() })
            }
            Some(_) => {
                // [[room, [entry...]]], or nil when nothing came.
                let entries = match &read {
                    Value::Array(streams) => match streams.first() {
                        Some(Value::Array(stream)) => match stream.get(1) {
                            Some(Value::Array(entries)) => entries.iter().flat_map(room_lines).collect(),
                            _ => Vec::new(),
                        },
                        _ => Vec::new(),
                    },
                    _ => Vec::new(),
                };
                Ok(FeedBatch { epoch, lines: entries })
            }
        }
    }
}
