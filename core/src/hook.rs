//! The connect hook: the application's say before each connection attempt.
//! It may set request headers and WebSocket subprotocols and a token the
//! longconn protocol carries in its hello, typically a fresh credential
//! for a server that refuses expired ones. See [`crate::Client::set_connect_hook`].

pub use crate::protocol::hello::MAX_TOKEN;

/// The attempt about to be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectInfo {
    /// The server's place in the config's list (0: the first URL).
    pub server_index: usize,
    /// The server's URL.
    pub url: String,
    /// Attempts since the client last connected (or since it started), from 1.
    pub attempt: u32,
}

/// What the attempt sends, for the hook to change: it starts as the config
/// says (its headers and subprotocols; no token) on every attempt.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectRequest {
    /// Request headers of the WebSocket handshake (name, value).
    pub headers: Vec<(String, String)>,
    /// WebSocket subprotocols to offer, most preferred first.
    pub subprotocols: Vec<String>,
    /// Carried in the longconn protocol's hello (version 2: tcp and tls
    /// with the longconn framing, ws and wss with the `longconn.v2`
    /// subprotocol); at most [`MAX_TOKEN`] bytes.
    pub token: Option<Vec<u8>>,
}

impl ConnectRequest {
    /// Sets a header, replacing any of the same name (names compare
    /// without regard to case). Refuses what cannot go in a request.
    pub fn set_header(&mut self, name: &str, value: &str) -> Result<(), String> {
        let token_char = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        if name.is_empty() || !name.chars().all(token_char) {
            return Err(format!("{name:?} is not a valid header name"));
        }
        if value.chars().any(|c| c == '\r' || c == '\n' || c == '\0') {
            return Err(format!("the value of header {name} holds a line break or NUL"));
        }
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name.to_string(), value.to_string()));
        Ok(())
    }

    /// Sets the token; refuses one over [`MAX_TOKEN`] bytes.
    pub fn set_token(&mut self, token: &[u8]) -> Result<(), String> {
        if token.len() > MAX_TOKEN {
            return Err(format!("a token takes at most {MAX_TOKEN} bytes, not {}", token.len()));
        }
        self.token = Some(token.to_vec());
        Ok(())
    }
}

/// Called before each connection attempt, on a library thread that is not
/// an I/O thread, so it may wait (for a token service, say) up to the
/// connect timeout; the attempt waits for it, and one taking longer fails
/// the attempt (the next attempt waits for the same call instead of making
/// another: calls never overlap). It may call the client's functions as
/// its event callbacks may. An error is reported as a connect failure
/// naming it, and the attempt is retried with backoff.
pub trait ConnectHook: Send + Sync + 'static {
    fn before_connect(&self, info: &ConnectInfo, request: &mut ConnectRequest) -> Result<(), String>;
}

impl<F> ConnectHook for F
where
    F: Fn(&ConnectInfo, &mut ConnectRequest) -> Result<(), String> + Send + Sync + 'static,
{
    fn before_connect(&self, info: &ConnectInfo, request: &mut ConnectRequest) -> Result<(), String> {
        self(info, request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_replaced_by_name_and_bad_ones_refused() {
        let mut request =
            ConnectRequest { headers: vec![("Authorization".into(), "old".into())], ..Default::default() };
        request.set_header("authorization", "Bearer new").unwrap();
        request.set_header("X-Trace", "1").unwrap();
        assert_eq!(request.headers, [("authorization".into(), "Bearer new".into()), ("X-Trace".into(), "1".into())]);
        assert!(request.set_header("Bad Name", "x").unwrap_err().contains("not a valid header name"));
        assert!(request.set_header("", "x").is_err());
        assert!(request.set_header("X", "a\r\nInjected: 1").unwrap_err().contains("line break"));
        request.set_token(&[7; MAX_TOKEN]).unwrap();
        assert!(request.set_token(&[7; MAX_TOKEN + 1]).unwrap_err().contains("at most 2048"));
    }
}
