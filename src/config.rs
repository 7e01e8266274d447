//! `lc_config`: the settings a client is created from.

use std::ffi::c_char;
use std::time::Duration;

use bytes::Bytes;

use longconn_core::config::{ClientConfig, PlainHeartbeat, MAX_FRAME_SIZE_LIMIT};
use longconn_core::durable::OutboxSync;
use longconn_core::policy::backoff::BackoffPolicy;
use longconn_core::policy::failover::ServerOrder;
use longconn_core::policy::heartbeat::HeartbeatPolicy;
use longconn_core::policy::limits::InboxLimits;
use longconn_core::transport::proxy::ProxySetting;

use crate::boundary::{self, bytes_arg, str_arg};
use crate::status::*;

/// Client settings. Create with lc_config_new(), adjust with the setters,
/// pass to lc_client_new() (which copies it), free with lc_config_free().
///
/// Every setter takes `config` (not NULL, borrowed), copies what it is given,
/// leaves the config unchanged when it fails, and returns LC_STATUS_OK,
/// LC_STATUS_NULL_ARGUMENT, LC_STATUS_PANIC or the statuses it lists. A
/// config is not thread-safe: use it from one thread at a time (any thread;
/// also from a callback).
pub struct lc_config {
    pub(crate) inner: ClientConfig,
}

/// Builds the reconnection policy shared by the config and client setters.
pub(crate) fn backoff_policy(
    base: BackoffPolicy,
    initial_ms: u32,
    max_ms: u32,
    multiplier: f64,
    jitter: f64,
    max_attempts: u32,
) -> Result<BackoffPolicy, lc_status> {
    let policy = BackoffPolicy {
        initial: Duration::from_millis(initial_ms.into()),
        max: Duration::from_millis(max_ms.into()),
        multiplier,
        jitter,
        max_attempts,
        ..base
    };
    policy.validate().map_err(|why| fail(LC_STATUS_INVALID_ARGUMENT, why))?;
    Ok(policy)
}

pub(crate) fn heartbeat_policy(interval_ms: u32, timeout_ms: u32) -> Result<HeartbeatPolicy, lc_status> {
    let policy = HeartbeatPolicy {
        interval: Duration::from_millis(interval_ms.into()),
        timeout: Duration::from_millis(timeout_ms.into()),
    };
    policy.validate().map_err(|why| fail(LC_STATUS_INVALID_ARGUMENT, why))?;
    Ok(policy)
}

fn with_config(config: *mut lc_config, f: impl FnOnce(&mut ClientConfig) -> Result<(), lc_status>) -> lc_status {
    ffi_guard!({
        // SAFETY: the caller passes a config from lc_config_new that no other
        // thread uses during the call (documented); NULL is handled.
        let Some(config) = (unsafe { config.as_mut() }) else {
            return fail(LC_STATUS_NULL_ARGUMENT, "config is NULL");
        };
        match f(&mut config.inner) {
            Ok(()) => LC_STATUS_OK,
            Err(status) => status,
        }
    })
}

/// Creates a config for the server at `url`.
///
/// `url`: NUL-terminated UTF-8, not NULL, borrowed for the call. Forms:
/// `tcp://host:port` (longconn protocol), `tcp://host:port?framing=length`
/// (4-byte big-endian length prefix), `tcp://host:port?framing=line`
/// (newline-delimited), `ws://host[:port][/path][?query]` (WebSocket; port
/// 80 by default); `tls://` and `wss://` (port 443 by default) are the same
/// over TLS, verified against the system's roots. IPv6: `tcp://[::1]:7070`.
/// `out_config`: not NULL; on success receives a new config that the caller
/// owns and must free with lc_config_free(). Untouched on failure.
///
/// Defaults: heartbeat ping after 5000 ms idle, link dead after
/// 15000 ms (plain framings: heartbeats off until lc_config_set_plain_heartbeat);
/// reconnect 1000 ms doubling to 30000 ms, jitter 0.2, unlimited attempts;
/// outbox 100000 messages / 16 MiB; inbox 65536 messages / 8 MiB; maximum
/// frame 1 MiB; connect timeout 10000 ms.
///
/// Any thread; also from a callback. Returns LC_STATUS_OK, or
/// LC_STATUS_NULL_ARGUMENT, LC_STATUS_INVALID_UTF8, LC_STATUS_INVALID_URL,
/// LC_STATUS_PANIC.
#[no_mangle]
pub unsafe extern "C" fn lc_config_new(url: *const c_char, out_config: *mut *mut lc_config) -> lc_status {
    ffi_guard!({
        boundary::init();
        require_out!(out_config, "out_config");
        let url = match str_arg(url, "url") {
            Ok(u) => u,
            Err(status) => return status,
        };
        match ClientConfig::new(url) {
            Ok(inner) => {
                write_out!(out_config, Box::into_raw(Box::new(lc_config { inner })));
                LC_STATUS_OK
            }
            Err(e) => fail_with(e),
        }
    })
}

/// Adds a server to try when the ones before it cannot be reached: the
/// client starts with the URL given to lc_config_new(), moves to the next
/// server of the list when an attempt fails (at once), and backs off one
/// step of its reconnection schedule only when a whole round of the list
/// has failed; host names are resolved again on every attempt. A protocol
/// 2 session resumes on whichever server answers, so the servers must
/// share their sessions (the bundled server: the same data directory).
/// After a connection ends, the next attempt goes to the same server first.
///
/// `url`: NUL-terminated UTF-8, not NULL, copied; the forms of
/// lc_config_new(). Every server of a list must be able to carry the same
/// session: `tcp://` and `tls://` servers with the same framing, or `ws://`
/// and `wss://` servers. Also returns LC_STATUS_INVALID_UTF8,
/// LC_STATUS_INVALID_URL (the message says what is wrong) and
/// LC_STATUS_INVALID_ARGUMENT (a server that cannot share the session; the
/// message says why).
#[no_mangle]
pub unsafe extern "C" fn lc_config_add_server(config: *mut lc_config, url: *const c_char) -> lc_status {
    with_config(config, |c| {
        let url = str_arg(url, "url")?;
        c.add_server(url).map_err(fail_with)
    })
}

/// Sends every connection through a proxy, for every transport, instead of
/// the one the environment names. `url` is `scheme://[user[:password]@]host[:port]`
/// (`%XX` escapes in the user and password):
/// - `http://` (also when no scheme is written; port 1080 by default):
///   `CONNECT` to the server, with basic authentication when a user is given;
/// - `https://` (port 443 by default): the same over TLS to the proxy,
///   verified against the client's roots or CA file;
/// - `socks5://` (port 1080): SOCKS5, the server's name resolved here, with
///   user and password authentication when a user is given;
/// - `socks5h://`: the same, the name resolved by the proxy.
///
/// TLS, WebSocket or the framing then run through the tunnel. An empty
/// string means no proxy at all, whatever the environment says.
///
/// Without this call, the client reads the environment when it is created
/// (lc_client_new(), on the calling thread), as curl does: `ws_proxy` or
/// `WS_PROXY`, then `http_proxy` (lowercase only) for `ws://`; `wss_proxy` or
/// `WSS_PROXY`, then `https_proxy` or `HTTPS_PROXY` for `wss://`; then
/// `all_proxy` or `ALL_PROXY` for every scheme; unless `no_proxy` or
/// `NO_PROXY` names the server (a comma list; `*` for all; names match
/// themselves and their subdomains, a leading dot ignored, case ignored;
/// IP addresses and CIDR ranges match servers given by address; names are
/// never resolved to be matched). An invalid URL in such a variable makes
/// lc_client_new() fail with LC_STATUS_INVALID_ARGUMENT and a message naming
/// the variable.
///
/// A proxy that refuses (an HTTP status other than 2xx, 407 for
/// credentials; a SOCKS5 refusal) fails the attempt with an error event
/// naming the proxy and its answer, and reconnection goes on. `url`:
/// NUL-terminated UTF-8, not NULL, copied. Also returns
/// LC_STATUS_INVALID_UTF8 and LC_STATUS_INVALID_URL (the message says what
/// is wrong; it never shows the password).
#[no_mangle]
pub unsafe extern "C" fn lc_config_set_proxy(config: *mut lc_config, url: *const c_char) -> lc_status {
    with_config(config, |c| {
        let url = str_arg(url, "url")?;
        c.proxy = ProxySetting::parse(url).map_err(|why| fail(LC_STATUS_INVALID_URL, why))?;
        Ok(())
    })
}

/// For `http://` and `https://` servers: where messages are sent, one POST
/// per message, in order, on a kept-alive connection of their own (the
/// stream holds the other): `url`, of the same scheme (`https://` when the
/// servers are), instead of the stream's own URL (the default). Each POST
/// carries `Idempotency-Key: "SENDER:NUMBER"` (32 hex digits chosen at
/// random per client, and the message's number from lc_client_send_seq()),
/// so a server that keeps them drops a retry it already has: a message is
/// marked sent once the server answered 2xx, and sent again under the same
/// key after a failure. `url`: NUL-terminated UTF-8, not NULL, copied. Also
/// returns LC_STATUS_INVALID_UTF8, LC_STATUS_INVALID_URL and
/// LC_STATUS_INVALID_ARGUMENT (not an http:// or https:// URL of the
/// servers' scheme).
#[no_mangle]
pub unsafe extern "C" fn lc_config_set_http_send_url(config: *mut lc_config, url: *const c_char) -> lc_status {
    with_config(config, |c| {
        let url = str_arg(url, "url")?;
        c.set_http_send_url(url).map_err(fail_with)
    })
}

/// `ws://` and `wss://`: whether to offer permessage-deflate (RFC 7692) in
/// the handshake; on by default. When the server agrees, the messages it
/// compresses are inflated, within the maximum message size (a message that
/// would inflate past it is an LC_ERROR_FRAME_TOO_LARGE error, not memory
/// growth); messages this client sends are compressed from 128 bytes on
/// (shorter ones go as they are, still written directly from the sending
/// thread; longer ones by the I/O thread, which compresses them in order).
/// Fails only with LC_STATUS_NULL_ARGUMENT or LC_STATUS_PANIC.
#[no_mangle]
pub unsafe extern "C" fn lc_config_set_websocket_compression(config: *mut lc_config, enabled: bool) -> lc_status {
    with_config(config, |c| {
        c.ws_compression = enabled;
        Ok(())
    })
}

/// Keeps the protocol 2 session and every message not yet acknowledged in
/// the file at `path` (and a lock in `PATH.lock`), so that a program
/// started again with the same path resumes the same session: the server
/// receives every message exactly once and in order, across crashes of the
/// program and of the server. lc_client_new() then opens the file: it fails
/// with LC_STATUS_STORAGE when another process holds it, or when it is not
/// an outbox file of this version (it is left alone); a tail torn by a
/// crash is cut off, reported in an LC_EVENT_ERROR event (LC_ERROR_IO) and
/// never sent. The restored messages are queued first, numbered where the
/// file left off (lc_stats.restored_number). A send fails with
/// LC_STATUS_STORAGE when its record cannot be written (nothing is queued).
/// Messages left unsent when the client is closed or freed stay in the file
/// for the next program on the path. Acknowledged messages are removed as
/// the file is rewritten, so its size stays bounded by the outbox limits.
/// `path`: NUL-terminated UTF-8, not NULL, copied; its directory must exist.
/// Also returns LC_STATUS_INVALID_UTF8 and LC_STATUS_INVALID_ARGUMENT (an
/// empty path).
#[no_mangle]
pub unsafe extern "C" fn lc_config_set_outbox_path(config: *mut lc_config, path: *const c_char) -> lc_status {
    with_config(config, |c| {
        let path = str_arg(path, "path")?;
        if path.is_empty() {
            return Err(fail(LC_STATUS_INVALID_ARGUMENT, "the outbox path is empty"));
        }
        c.outbox_path = Some(path.into());
        Ok(())
    })
}

/// When a sent message's record reaches the disk, with an outbox file:
/// LC_OUTBOX_SYNC_EVERY_SEND (the default): before lc_client_send()
/// returns; nothing sent is lost on a crash of the program or a power loss,
/// at the cost of one fdatasync per send. LC_OUTBOX_SYNC_WITHIN: within
/// `window_ms` milliseconds after it returned (one fdatasync per window);
/// a crash of the program loses nothing (the record is in the kernel), a
/// power loss up to the window. LC_OUTBOX_SYNC_NEVER: when the kernel writes
/// it back; a crash of the program loses nothing, a power loss whatever the
/// kernel had not written (typically up to 30 s). `window_ms` counts for
/// LC_OUTBOX_SYNC_WITHIN only (1 to 60000). `mode`: an lc_outbox_sync
/// value. Also returns LC_STATUS_INVALID_ARGUMENT (another mode, or a window
/// out of range).
#[no_mangle]
pub unsafe extern "C" fn lc_config_set_outbox_sync(config: *mut lc_config, mode: u32, window_ms: u32) -> lc_status {
    with_config(config, |c| {
        c.outbox_sync = match mode {
            m if m == lc_outbox_sync::LC_OUTBOX_SYNC_EVERY_SEND as u32 => OutboxSync::EverySend,
            m if m == lc_outbox_sync::LC_OUTBOX_SYNC_WITHIN as u32 && (1..=60_000).contains(&window_ms) => {
                OutboxSync::Within(Duration::from_millis(window_ms.into()))
            }
            m if m == lc_outbox_sync::LC_OUTBOX_SYNC_NEVER as u32 => OutboxSync::Never,
            _ => {
                let why = format!(
                    "outbox sync mode {mode} with a window of {window_ms} ms: modes are 0-2, windows 1-60000 ms"
                );
                return Err(fail(LC_STATUS_INVALID_ARGUMENT, why));
            }
        };
        Ok(())
    })
}

/// When an outbox file's records reach the disk (lc_config_set_outbox_sync()).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum lc_outbox_sync {
    LC_OUTBOX_SYNC_EVERY_SEND = 0,
    LC_OUTBOX_SYNC_WITHIN = 1,
    LC_OUTBOX_SYNC_NEVER = 2,
}

/// Where the client's first attempt goes in its list of servers
/// (lc_config_add_server()): `random_start` false (the default) starts with
/// the URL given to lc_config_new(); true starts with a server picked at
/// random, so that many clients spread over the list, and goes on through
/// the list from there. Fails only with LC_STATUS_NULL_ARGUMENT or
/// LC_STATUS_PANIC.
#[no_mangle]
pub unsafe extern "C" fn lc_config_set_server_order(config: *mut lc_config, random_start: bool) -> lc_status {
    with_config(config, |c| {
        c.server_order = if random_start { ServerOrder::RandomStart } else { ServerOrder::AsListed };
        Ok(())
    })
}

/// Frees a config. NULL is fine; must not be called twice on the same config.
///
/// `config`: consumed; must not be used afterwards. Clients created from it
/// are not affected. Any thread, but not while another thread uses the
/// config; also from a callback.
#[no_mangle]
pub unsafe extern "C" fn lc_config_free(config: *mut lc_config) {
    // SAFETY: the caller passes a handle from lc_config_new, freed once (documented).
    unsafe { boundary::free_boxed(config) }
}

/// Sets heartbeat timing: ping once either direction has been idle for
/// `interval_ms` (nothing received, or nothing written), declare the link
/// dead after `timeout_ms` without any inbound data, or when a write has made
/// no progress for `timeout_ms`. `interval_ms` 0
/// turns heartbeats off; otherwise `timeout_ms` must exceed `interval_ms`,
/// else LC_STATUS_INVALID_ARGUMENT.
#[no_mangle]
pub unsafe extern "C" fn lc_config_set_heartbeat(
    config: *mut lc_config,
    interval_ms: u32,
    timeout_ms: u32,
) -> lc_status {
    with_config(config, |c| {
        c.heartbeat = heartbeat_policy(interval_ms, timeout_ms)?;
        Ok(())
    })
}

/// Sets the reconnection schedule: attempt n waits
/// min(max_ms, initial_ms * multiplier^(n-1)), spread by +/- `jitter`
/// (0 to 1), capped at `max_ms`. `max_attempts` 0 means never give up.
/// Requires initial_ms > 0, max_ms >= initial_ms, a finite multiplier >= 1
/// and jitter from 0 to 1, else LC_STATUS_INVALID_ARGUMENT.
#[no_mangle]
pub unsafe extern "C" fn lc_config_set_reconnect(
    config: *mut lc_config,
    initial_ms: u32,
    max_ms: u32,
    multiplier: f64,
    jitter: f64,
    max_attempts: u32,
) -> lc_status {
    with_config(config, |c| {
        c.backoff = backoff_policy(c.backoff, initial_ms, max_ms, multiplier, jitter, max_attempts)?;
        Ok(())
    })
}

/// Turns automatic reconnection on (the default) or off. When off, the
/// client closes after the first failed attempt or dropped connection. Fails
/// only with LC_STATUS_NULL_ARGUMENT or LC_STATUS_PANIC.
#[no_mangle]
pub unsafe extern "C" fn lc_config_set_auto_reconnect(config: *mut lc_config, enabled: bool) -> lc_status {
    with_config(config, |c| {
        c.auto_reconnect = enabled;
        Ok(())
    })
}

/// Limits the outbox to `max_messages` messages and `max_bytes` payload
/// bytes (both > 0, else LC_STATUS_INVALID_ARGUMENT). lc_client_send() fails
/// with LC_STATUS_QUEUE_FULL beyond them.
#[no_mangle]
pub unsafe extern "C" fn lc_config_set_outbox_limits(
    config: *mut lc_config,
    max_messages: usize,
    max_bytes: usize,
) -> lc_status {
    with_config(config, |c| {
        if max_messages == 0 || max_bytes == 0 {
            return Err(fail(LC_STATUS_INVALID_ARGUMENT, "outbox limits must be positive"));
        }
        c.outbox.max_messages = max_messages;
        c.outbox.max_bytes = max_bytes;
        Ok(())
    })
}

/// Limits what received messages may hold while they wait for the
/// application (queued for lc_client_poll(), or on the callback thread and
/// not yet delivered): `max_messages` messages, and `max_bytes` bytes where
/// each message weighs its payload plus 128 bytes (so empty messages count
/// too). Past either limit the client stops reading from the socket until
/// the application catches up, and TCP's flow control pushes back on the
/// server; the connection stays up. Defaults: 65536 messages, 8 MiB, sized
/// for a library inside someone else's process. Both must be > 0, else
/// LC_STATUS_INVALID_ARGUMENT.
#[no_mangle]
pub unsafe extern "C" fn lc_config_set_inbox_limits(
    config: *mut lc_config,
    max_messages: usize,
    max_bytes: usize,
) -> lc_status {
    with_config(config, |c| {
        let limits = InboxLimits { max_messages, max_bytes };
        limits.validate().map_err(|why| fail(LC_STATUS_INVALID_ARGUMENT, why))?;
        c.inbox = limits;
        Ok(())
    })
}

/// Sets the largest message payload, sent or received (1 byte to 256 MiB).
/// A larger frame from the server ends that connection with an error event.
/// Out of range: LC_STATUS_INVALID_ARGUMENT.
#[no_mangle]
pub unsafe extern "C" fn lc_config_set_max_frame_size(config: *mut lc_config, max_bytes: usize) -> lc_status {
    with_config(config, |c| {
        if max_bytes == 0 || max_bytes > MAX_FRAME_SIZE_LIMIT {
            return Err(fail(LC_STATUS_INVALID_ARGUMENT, "maximum frame size must be 1 byte to 256 MiB"));
        }
        c.max_frame_size = max_bytes;
        Ok(())
    })
}

/// Sets the time allowed for resolving, connecting and the hello exchange;
/// 0 gives LC_STATUS_INVALID_ARGUMENT.
#[no_mangle]
pub unsafe extern "C" fn lc_config_set_connect_timeout(config: *mut lc_config, timeout_ms: u32) -> lc_status {
    with_config(config, |c| {
        if timeout_ms == 0 {
            return Err(fail(LC_STATUS_INVALID_ARGUMENT, "connect timeout must be positive"));
        }
        c.connect_timeout = Duration::from_millis(timeout_ms.into());
        Ok(())
    })
}

/// Sets the heartbeat payloads for the plain framings (length, line), which
/// have no control frames: the client sends `ping` as a message and treats a
/// message equal to `pong` as the answer (it is not delivered). A message
/// equal to `ping` from the server is answered with `pong`. Passing both
/// lengths 0 turns plain heartbeats off. Buffers are copied; NULL is allowed
/// with length 0 (else LC_STATUS_NULL_ARGUMENT). The payloads must differ,
/// fit the maximum frame size and, in line framing, hold no newline, else
/// LC_STATUS_INVALID_ARGUMENT.
#[no_mangle]
pub unsafe extern "C" fn lc_config_set_plain_heartbeat(
    config: *mut lc_config,
    ping: *const u8,
    ping_len: usize,
    pong: *const u8,
    pong_len: usize,
) -> lc_status {
    with_config(config, |c| {
        let ping = bytes_arg(ping, ping_len, "ping")?;
        let pong = bytes_arg(pong, pong_len, "pong")?;
        if ping.is_empty() && pong.is_empty() {
            c.plain_heartbeat = None;
            return Ok(());
        }
        let before = c
            .plain_heartbeat
            .replace(PlainHeartbeat { ping: Bytes::copy_from_slice(ping), pong: Bytes::copy_from_slice(pong) });
        if let Err(e) = c.validate() {
            c.plain_heartbeat = before;
            return Err(fail_with(e));
        }
        Ok(())
    })
}

/// Whether `s` is an HTTP token (RFC 9110): what header names and
/// subprotocol names are made of.
fn is_http_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Adds a request header to the WebSocket handshake, for example
/// `Authorization: Bearer ...`; sent again on every reconnect. `name` and
/// `value`: NUL-terminated UTF-8, copied; the name must be a valid HTTP
/// header name and the value must not contain line breaks. Ignored by the
/// TCP transports. Also returns LC_STATUS_INVALID_UTF8 and
/// LC_STATUS_INVALID_ARGUMENT (not a header name, or a line break in the value).
#[no_mangle]
pub unsafe extern "C" fn lc_config_add_header(
    config: *mut lc_config,
    name: *const c_char,
    value: *const c_char,
) -> lc_status {
    with_config(config, |c| {
        let name = str_arg(name, "name")?;
        let value = str_arg(value, "value")?;
        if !is_http_token(name) {
            return Err(fail(LC_STATUS_INVALID_ARGUMENT, format!("{name:?} is not a valid header name")));
        }
        if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(fail(LC_STATUS_INVALID_ARGUMENT, "a header value cannot contain line breaks"));
        }
        c.headers.push((name.to_owned(), value.to_owned()));
        Ok(())
    })
}

/// Offers a WebSocket subprotocol in the handshake; call once per protocol,
/// most preferred first. `protocol`: NUL-terminated UTF-8 token, not NULL,
/// copied. Ignored by the TCP transports. Also returns LC_STATUS_INVALID_UTF8
/// and LC_STATUS_INVALID_ARGUMENT (not a token).
#[no_mangle]
pub unsafe extern "C" fn lc_config_add_subprotocol(config: *mut lc_config, protocol: *const c_char) -> lc_status {
    with_config(config, |c| {
        let protocol = str_arg(protocol, "protocol")?;
        if !is_http_token(protocol) {
            return Err(fail(LC_STATUS_INVALID_ARGUMENT, format!("{protocol:?} is not a valid subprotocol name")));
        }
        c.subprotocols.push(protocol.to_owned());
        Ok(())
    })
}

/// For `tls://` and `wss://`: trusts the CA certificates in the PEM file at
/// `path` instead of the system's roots (for a private CA). Read when the
/// client is created: lc_client_new() fails with LC_STATUS_INVALID_ARGUMENT
/// if the file cannot be read or holds no certificate. `path`: NUL-terminated
/// UTF-8, not NULL, copied. Also returns LC_STATUS_INVALID_UTF8.
#[no_mangle]
pub unsafe extern "C" fn lc_config_set_tls_ca_file(config: *mut lc_config, path: *const c_char) -> lc_status {
    with_config(config, |c| {
        c.tls.ca_file = Some(str_arg(path, "path")?.into());
        Ok(())
    })
}

/// For `tls://` and `wss://`: verifies the server's certificate for `name`
/// instead of the URL's host (for example when connecting by IP address).
/// `name`: NUL-terminated UTF-8, not NULL, copied. Also returns
/// LC_STATUS_INVALID_UTF8.
#[no_mangle]
pub unsafe extern "C" fn lc_config_set_tls_server_name(config: *mut lc_config, name: *const c_char) -> lc_status {
    with_config(config, |c| {
        c.tls.server_name = Some(str_arg(name, "name")?.to_owned());
        Ok(())
    })
}

/// For `tls://` and `wss://`: presents the certificate chain and private key
/// in the PEM files `cert_path` and `key_path` (mutual TLS). Read when the
/// client is created; lc_client_new() fails with LC_STATUS_INVALID_ARGUMENT
/// if they cannot be read or do not fit. Paths: NUL-terminated UTF-8, not
/// NULL, copied. Also returns LC_STATUS_INVALID_UTF8.
#[no_mangle]
pub unsafe extern "C" fn lc_config_set_tls_client_cert(
    config: *mut lc_config,
    cert_path: *const c_char,
    key_path: *const c_char,
) -> lc_status {
    with_config(config, |c| {
        c.tls.client_cert = Some((str_arg(cert_path, "cert_path")?.into(), str_arg(key_path, "key_path")?.into()));
        Ok(())
    })
}

/// DANGEROUS: with `skip` true, accepts any server certificate, so anyone on
/// the path can read and change the traffic. For tests against throwaway
/// servers only; every connection logs a warning while it is on. Fails only
/// with LC_STATUS_NULL_ARGUMENT or LC_STATUS_PANIC.
#[no_mangle]
pub unsafe extern "C" fn lc_config_set_tls_dangerous_skip_verification(
    config: *mut lc_config,
    skip: bool,
) -> lc_status {
    with_config(config, |c| {
        c.tls.dangerous_skip_verification = skip;
        Ok(())
    })
}

/// Sets the name this client sends in its hello frame (longconn protocol
/// only). `name`: NUL-terminated UTF-8, not NULL, at most 255 bytes, copied.
/// Also returns LC_STATUS_INVALID_UTF8 and LC_STATUS_INVALID_ARGUMENT (too long).
#[no_mangle]
pub unsafe extern "C" fn lc_config_set_client_name(config: *mut lc_config, name: *const c_char) -> lc_status {
    with_config(config, |c| {
        let name = str_arg(name, "name")?;
        if name.len() > 255 {
            return Err(fail(LC_STATUS_INVALID_ARGUMENT, "client name is longer than 255 bytes"));
        }
        c.client_name = name.to_owned();
        Ok(())
    })
}

/// Chooses the highest protocol version offered in the hello (longconn
/// protocol over `tcp://` and `tls://`): 2, the default, for acknowledged
/// delivery and resume (exactly once across reconnects, when the server
/// speaks it; a version 1 server is still served best effort), or 1 for
/// best effort only. Returns LC_STATUS_INVALID_ARGUMENT for another value,
/// LC_STATUS_NULL_ARGUMENT, LC_STATUS_PANIC.
#[no_mangle]
pub unsafe extern "C" fn lc_config_set_protocol_version(config: *mut lc_config, version: u32) -> lc_status {
    with_config(config, |c| {
        if !(1..=2).contains(&version) {
            return Err(fail(LC_STATUS_INVALID_ARGUMENT, "the protocol version must be 1 or 2"));
        }
        c.max_protocol = version as u8;
        Ok(())
    })
}

/// Runs this client's callbacks on the library's I/O thread that received
/// the data, instead of on a callback thread (off by default). This saves
/// a thread hand-off (a wake-up and a context switch) per read, which is
/// most of a round trip's cost when one message travels at a time.
///
/// The rules, which the application promises by turning this on: callbacks
/// return quickly and never block (no sleeping, locks held for long, disk
/// or network I/O, or waiting on another thread), since while one runs the
/// I/O thread serves no other connection. Inside them, as on a callback
/// thread, lc_client_send() may be called, lc_client_send_wait() does not
/// wait, lc_client_close() returns LC_STATUS_IN_PROGRESS, and
/// lc_client_poll() must not be called with a timeout. Callbacks of one
/// client still run one at a time and in order; an event that arises on
/// another thread, or while another thread is running this client's
/// callbacks, goes to the callback thread as usual. Fails only with
/// LC_STATUS_NULL_ARGUMENT or LC_STATUS_PANIC.
#[no_mangle]
pub unsafe extern "C" fn lc_config_set_callbacks_on_io_thread(config: *mut lc_config, enabled: bool) -> lc_status {
    with_config(config, |c| {
        c.callbacks_on_io_thread = enabled;
        Ok(())
    })
}

/// Does this client's I/O on the thread that polls it, instead of on the
/// library's I/O threads (off by default), in the way of an event loop's
/// "service" call: the connection is read, written, kept alive with
/// heartbeats and reconnected only while some thread is inside
/// lc_client_poll(), lc_client_poll_messages() or lc_client_close() for
/// this client. A busy poller then pays no thread hand-off at all: the
/// reply that lc_client_poll() waits for is read by that same call, and
/// what the application sends in between is written the next time it
/// polls (or at once from the calling thread when the connection is idle,
/// as always).
///
/// A poll with a timeout of 0 takes one turn that never waits: what is
/// ready is read and written, then it returns.
///
/// The rules, which the application accepts by turning this on: poll at
/// least once per heartbeat interval while connected (else the server may
/// judge the connection dead); never from a callback running on an I/O
/// thread (LC_STATUS_INVALID_ARGUMENT); lc_client_connect() only starts the
/// connection, which the first poll carries out; no callbacks (setting an
/// event or message callback on such a client fails with
/// LC_STATUS_INVALID_ARGUMENT, and so does lc_client_event_fd(), since
/// nothing arrives while a program waits on a descriptor);
/// lc_client_send_wait() never waits (room in a full outbox only comes
/// while polling). Fails only with
/// LC_STATUS_NULL_ARGUMENT or LC_STATUS_PANIC.
#[no_mangle]
pub unsafe extern "C" fn lc_config_set_io_in_poll(config: *mut lc_config, enabled: bool) -> lc_status {
    with_config(config, |c| {
        c.io_in_poll = enabled;
        Ok(())
    })
}

/// Turns LC_EVENT_ACKNOWLEDGED events on or off (off by default). When on,
/// each acknowledgement from the server that moves lc_stats.acked_number
/// is also queued as an event (they arrive every few milliseconds while
/// messages flow; lc_client_poll_messages() stops at them like at any other
/// event). Fails only with LC_STATUS_NULL_ARGUMENT or LC_STATUS_PANIC.
#[no_mangle]
pub unsafe extern "C" fn lc_config_set_acknowledgement_events(config: *mut lc_config, enabled: bool) -> lc_status {
    with_config(config, |c| {
        c.ack_events = enabled;
        Ok(())
    })
}
