//! The connect callback at the C boundary: `lc_client_set_connect_callback`
//! and the `lc_connect_request_*` functions it uses to change an attempt's
//! headers, subprotocols and token.

use std::ffi::{c_char, c_void, CString};
use std::sync::Arc;

use crate::boundary::str_arg;
use crate::client::lc_client;
use crate::status::*;
use longconn_core::hook::{ConnectHook, ConnectInfo, ConnectRequest};

/// The attempt about to be made (see lc_client_set_connect_callback()).
#[repr(C)]
pub struct lc_connect_info {
    /// The server's place in the list of servers (0: the URL given to
    /// lc_config_new(), then in the order of lc_config_add_server()).
    pub server_index: u32,
    /// Attempts since the client last connected (or since it started), from 1.
    pub attempt: u32,
    /// The server's URL: NUL-terminated UTF-8, valid during the call.
    pub url: *const c_char,
}

/// What one connection attempt sends, for the connect callback to change
/// with the lc_connect_request_* functions. Opaque; valid only during the
/// callback, on its thread.
pub struct lc_connect_request {
    request: ConnectRequest,
    error: Option<String>,
}

/// Called before each connection attempt. Return true to go on with the
/// attempt, false to fail it (with a message set by
/// lc_connect_request_set_error(), or a generic one): the failure is an
/// error event and the attempt is retried with backoff.
pub type lc_connect_cb = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        info: *const lc_connect_info,
        request: *mut lc_connect_request,
    ) -> bool,
>;

/// A C callback and its user data as the core's hook.
struct CConnectHook {
    callback: unsafe extern "C" fn(*mut c_void, *const lc_connect_info, *mut lc_connect_request) -> bool,
    user_data: *mut c_void,
}

// SAFETY: registering the callback promises (documented) that it and its
// user_data may be used from a library thread.
unsafe impl Send for CConnectHook {}
// SAFETY: as above; calls never overlap (the core waits for one before the next).
unsafe impl Sync for CConnectHook {}

impl ConnectHook for CConnectHook {
    fn before_connect(&self, info: &ConnectInfo, request: &mut ConnectRequest) -> Result<(), String> {
        let url = CString::new(info.url.as_str()).unwrap_or_default();
        let c_info = lc_connect_info {
            server_index: u32::try_from(info.server_index).unwrap_or(u32::MAX),
            attempt: info.attempt,
            url: url.as_ptr(),
        };
        let mut c_request = lc_connect_request { request: std::mem::take(request), error: None };
        // SAFETY: the callback was registered with this user_data (the
        // caller's promise); both pointers are valid for the call.
        let go_on = unsafe { (self.callback)(self.user_data, &c_info, &mut c_request) };
        *request = c_request.request;
        match (go_on, c_request.error) {
            (true, _) => Ok(()),
            (false, Some(message)) => Err(message),
            (false, None) => Err("the connect callback returned false".into()),
        }
    }
}

/// Registers a callback the library calls before each connection attempt
/// (also the first), to give a fresh token or headers; NULL removes it.
///
/// It runs on a library thread that is neither an I/O thread nor a
/// callback thread, so it may wait for a token service, up to the connect
/// timeout (lc_config_set_connect_timeout()): the attempt waits for it,
/// and a callback still running after that fails the attempt (the next
/// attempt waits for the same call, so calls never overlap). It may run
/// at the same time as this client's other callbacks, on another thread.
/// Inside it you may call this client's functions as from its other
/// callbacks (lc_client_close() returns LC_STATUS_IN_PROGRESS;
/// lc_client_free() waits for nothing). It must not unwind (C++
/// exceptions, longjmp) across the library.
///
/// The request starts as the config says (its headers and subprotocols, no
/// token) on every attempt; change it with lc_connect_request_set_header(),
/// lc_connect_request_set_subprotocols() and lc_connect_request_set_token().
/// Return false to fail the attempt (lc_connect_request_set_error() says
/// why): an LC_ERROR_CONNECT_FAILED event, then a retry with backoff.
///
/// `client`: not NULL, borrowed. `callback`: may be NULL. `user_data`:
/// passed through untouched; it must stay usable until the callback is
/// replaced or the client is freed. Any thread. Returns LC_STATUS_OK or
/// LC_STATUS_NULL_ARGUMENT, LC_STATUS_PANIC.
#[no_mangle]
pub unsafe extern "C" fn lc_client_set_connect_callback(
    client: *const lc_client,
    callback: lc_connect_cb,
    user_data: *mut c_void,
) -> lc_status {
    ffi_guard!({
        let client = deref_or_fail!(client, "client");
        let hook = callback.map(|callback| Arc::new(CConnectHook { callback, user_data }) as Arc<dyn ConnectHook>);
        client.core().set_connect_hook(hook);
        LC_STATUS_OK
    })
}

/// Runs `f` on the request behind `request`, inside the panic boundary.
fn with_request(request: *mut lc_connect_request, f: impl FnOnce(&mut lc_connect_request) -> lc_status) -> lc_status {
    ffi_guard!({
        // SAFETY: the callback passes the request it was given (documented);
        // NULL is handled.
        match unsafe { request.as_mut() } {
            Some(request) => f(request),
            None => fail(LC_STATUS_NULL_ARGUMENT, "request is NULL"),
        }
    })
}

/// Sets a request header of the WebSocket handshake, replacing any of the
/// same name (compared without regard to case). `name` and `value`:
/// NUL-terminated UTF-8, not NULL, copied. Returns LC_STATUS_OK,
/// LC_STATUS_INVALID_ARGUMENT (a name that is not an HTTP token, a value
/// with a line break), LC_STATUS_NULL_ARGUMENT, LC_STATUS_INVALID_UTF8.
#[no_mangle]
pub unsafe extern "C" fn lc_connect_request_set_header(
    request: *mut lc_connect_request,
    name: *const c_char,
    value: *const c_char,
) -> lc_status {
    with_request(request, |r| {
        let (name, value) = match (str_arg(name, "name"), str_arg(value, "value")) {
            (Ok(name), Ok(value)) => (name, value),
            (Err(status), _) | (_, Err(status)) => return status,
        };
        match r.request.set_header(name, value) {
            Ok(()) => LC_STATUS_OK,
            Err(why) => fail(LC_STATUS_INVALID_ARGUMENT, why),
        }
    })
}

/// Replaces the WebSocket subprotocols offered: `count` NUL-terminated
/// UTF-8 strings at `protocols`, most preferred first (NULL allowed when
/// `count` is 0, which offers none of the application's). Copied. Returns
/// LC_STATUS_OK, LC_STATUS_NULL_ARGUMENT, LC_STATUS_INVALID_UTF8,
/// LC_STATUS_INVALID_ARGUMENT (an empty name or one with a comma or space).
#[no_mangle]
pub unsafe extern "C" fn lc_connect_request_set_subprotocols(
    request: *mut lc_connect_request,
    protocols: *const *const c_char,
    count: usize,
) -> lc_status {
    with_request(request, |r| {
        if protocols.is_null() && count > 0 {
            return fail(LC_STATUS_NULL_ARGUMENT, "protocols is NULL");
        }
        let mut list = Vec::with_capacity(count.min(64));
        for i in 0..count {
            // SAFETY: the caller promises `count` readable pointers at `protocols`.
            let protocol = unsafe { *protocols.add(i) };
            match str_arg(protocol, "protocols[i]") {
                Ok(p) if !p.is_empty() && !p.contains([',', ' ', '\t']) => list.push(p.to_string()),
                Ok(p) => return fail(LC_STATUS_INVALID_ARGUMENT, format!("{p:?} is not a subprotocol name")),
                Err(status) => return status,
            }
        }
        r.request.subprotocols = list;
        LC_STATUS_OK
    })
}

/// Sets the token the longconn protocol carries in its hello (protocol
/// version 2: tcp:// and tls:// with the longconn framing, ws:// and wss://
/// with the longconn.v2 subprotocol): `len` bytes at `token` (NULL allowed
/// when `len` is 0), copied, at most 2,048 bytes. Returns LC_STATUS_OK,
/// LC_STATUS_NULL_ARGUMENT, LC_STATUS_INVALID_ARGUMENT (too long).
#[no_mangle]
pub unsafe extern "C" fn lc_connect_request_set_token(
    request: *mut lc_connect_request,
    token: *const u8,
    len: usize,
) -> lc_status {
    with_request(request, |r| {
        let token = if len == 0 {
            &[][..]
        } else if token.is_null() {
            return fail(LC_STATUS_NULL_ARGUMENT, "token is NULL");
        } else {
            // SAFETY: non-NULL, and the caller promises `len` readable bytes.
            unsafe { std::slice::from_raw_parts(token, len) }
        };
        match r.request.set_token(token) {
            Ok(()) => LC_STATUS_OK,
            Err(why) => fail(LC_STATUS_INVALID_ARGUMENT, why),
        }
    })
}

/// Says why the attempt fails, when the callback then returns false; the
/// error event carries it. `message`: NUL-terminated UTF-8, not NULL,
/// copied. Returns LC_STATUS_OK, LC_STATUS_NULL_ARGUMENT, LC_STATUS_INVALID_UTF8.
#[no_mangle]
pub unsafe extern "C" fn lc_connect_request_set_error(
    request: *mut lc_connect_request,
    message: *const c_char,
) -> lc_status {
    with_request(request, |r| match str_arg(message, "message") {
        Ok(message) => {
            r.error = Some(message.to_string());
            LC_STATUS_OK
        }
        Err(status) => status,
    })
}
