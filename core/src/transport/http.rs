//! HTTP long connections, the client's side: a GET whose response never
//! ends, on hyper's HTTP/1 client connection over the stream the dial and
//! TLS stages made (so proxies and the server list apply as to every
//! transport). The response's content type picks how it is read:
//! `text/event-stream` as Server-Sent Events ([`crate::protocol::sse`]),
//! anything else as newline-delimited messages (NDJSON and the like).
//!
//! What the server answers decides what happens next:
//! - 2xx: the stream; an SSE client sends `Last-Event-ID` with the last id
//!   it saw (never an empty one) when it reconnects.
//! - 204 No Content: the server asks the client to stop, as a browser's
//!   `EventSource` stops: no more reconnection.
//! - 301, 302, 303, 307, 308: followed within the attempt, up to
//!   [`MAX_REDIRECTS`], to the same scheme (a redirect from `http` to
//!   `https` or back is refused: the connector is made per server).
//! - 408, 429 and 5xx: retried with backoff, waiting at least `Retry-After`
//!   (seconds or an HTTP date) up to the backoff's maximum.
//! - Any other status: an error that stops reconnection (a 404 or a 401
//!   will not mend by itself).

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::client::conn::http1::Connection;
use hyper_util::rt::TokioIo;

use super::stream::ByteStream;
use super::{ConnectOptions, Reader, Stream};
use crate::endpoint::Endpoint;
use crate::lock::lock;
use crate::protocol::sse::{SseLabels, SseParser};
use crate::protocol::{FrameBatch, FrameError, FrameType};

/// Redirects followed within one attempt.
pub const MAX_REDIRECTS: usize = 5;

/// What an HTTP session carries from one connection to the next.
#[derive(Debug, Default)]
pub struct Progress {
    /// The client's key prefix for its POSTs (32 hex digits, chosen at
    /// random once): with each message's number it makes the message's
    /// `Idempotency-Key`, by which the server drops a retry it already has.
    pub sender_id: String,
    /// The last event id an SSE stream set (empty: none).
    pub last_event_id: String,
    /// The reconnection time an SSE stream asked for, until the session takes it.
    pub retry: Option<Duration>,
}

pub type SharedProgress = Arc<Mutex<Progress>>;

/// A server's answer that ended the attempt, inside the attempt's
/// `io::Error`, so the session can tell a stop from a retry.
#[derive(Debug)]
pub struct Refusal {
    pub status: u16,
    /// No more reconnection.
    pub stop: bool,
    /// Wait at least this long before the next attempt.
    pub retry_after: Option<Duration>,
    detail: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

impl std::error::Error for Refusal {}

/// How an attempt's request was answered.
pub enum Answer {
    Stream(Reader),
    /// Go there instead (an absolute URL, or a path on the same server).
    Redirect(String),
}

/// Drives an HTTP/1 client connection whose requests carry bodies of type `B`.
type Driver<B = Empty<Bytes>> = Pin<Box<Connection<TokioIo<Box<dyn Stream>>, B>>>;

/// Sends the GET for `endpoint` on `stream` and reads the answer's head.
pub async fn request(
    stream: ByteStream,
    endpoint: &Endpoint,
    options: &ConnectOptions,
    progress: &SharedProgress,
) -> io::Result<Answer> {
    let io: Box<dyn Stream> = match stream {
        ByteStream::Tcp(tcp) => Box::new(tcp),
        ByteStream::Other(other) => other,
    };
    let (mut sender, driver) =
        hyper::client::conn::http1::handshake(TokioIo::new(io)).await.map_err(io::Error::other)?;
    let mut driver: Driver = Box::pin(driver);
    let request = build_request(endpoint, options, &lock(progress).last_event_id)?;
    let response = tokio::select! {
        response = sender.send_request(request) => response.map_err(io::Error::other)?,
        ended = &mut driver => {
            let why = ended.map_or_else(|e| e.to_string(), |()| "closed".to_string());
            return Err(io::Error::new(io::ErrorKind::ConnectionAborted, format!("the server closed the connection before answering: {why}")));
        }
    };
    let status = response.status();
    let headers = response.headers();
    let refused = |stop: bool, retry_after: Option<Duration>, what: &str| {
        let detail = format!("the server answered {status}{what}");
        Err(io::Error::other(Refusal { status: status.as_u16(), stop, retry_after, detail }))
    };
    match status.as_u16() {
        200..=203 | 205..=299 => {}
        204 => return refused(true, None, ": it asks the client to stop reconnecting"),
        301 | 302 | 303 | 307 | 308 => {
            return match headers.get("location").and_then(|l| l.to_str().ok()) {
                Some(location) => Ok(Answer::Redirect(location.to_string())),
                None => refused(true, None, " without a Location to go to"),
            }
        }
        408 | 429 | 500..=599 => {
            let retry_after = headers.get("retry-after").and_then(|v| v.to_str().ok()).and_then(parse_retry_after);
            return refused(false, retry_after, "; trying again with backoff");
        }
        _ => return refused(true, None, "; not trying again (fix the URL or the credentials)"),
    }
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let body = if essence == "text/event-stream" {
        Body::Events(SseParser::new(&lock(progress).last_event_id, options.max_frame_size), SseLabels::default())
    } else {
        Body::Lines(Vec::new())
    };
    let reader = HttpReader {
        driver,
        driver_done: false,
        incoming: response.into_body(),
        body,
        progress: progress.clone(),
        max: options.max_frame_size,
        _sender: sender,
    };
    Ok(Answer::Stream(Reader::Http(Box::new(reader))))
}

fn build_request(
    endpoint: &Endpoint,
    options: &ConnectOptions,
    last_event_id: &str,
) -> io::Result<http::Request<Empty<Bytes>>> {
    let mut request = http::Request::get(endpoint.resource.as_str())
        .header("host", host_header(endpoint))
        .header("accept", "text/event-stream, application/x-ndjson;q=0.9, */*;q=0.1")
        .header("cache-control", "no-store");
    if !last_event_id.is_empty() {
        request = request.header("last-event-id", last_event_id);
    }
    for (name, value) in &options.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    request.body(Empty::new()).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("bad request: {e}")))
}

/// `Retry-After`: seconds, or an HTTP date.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or_default())
}

/// The location a redirect names, as an endpoint of the same scheme.
pub fn redirected(from: &Endpoint, location: &str) -> io::Result<Endpoint> {
    let refuse = |why: String| io::Error::new(io::ErrorKind::InvalidData, why);
    if location.starts_with('/') && !location.starts_with("//") {
        return Ok(Endpoint { resource: location.to_string(), ..from.clone() });
    }
    let to = Endpoint::parse(location).map_err(|e| refuse(format!("the server redirected to {e}")))?;
    if to.scheme != from.scheme {
        return Err(refuse(format!("the server redirected {from} to {to}: not followed across schemes")));
    }
    Ok(to)
}

enum Body {
    /// Server-Sent Events, and the labels of a read being made.
    Events(SseParser, SseLabels),
    /// One message per line; the line read so far.
    Lines(Vec<u8>),
}

/// The receiving half of an HTTP long connection: the response body, read
/// while hyper's connection is driven.
pub struct HttpReader {
    driver: Driver,
    driver_done: bool,
    incoming: Incoming,
    body: Body,
    progress: SharedProgress,
    max: usize,
    /// Held so the connection stays open for the response.
    _sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
}

impl HttpReader {
    /// Reads the next piece of the body into `batch` (each message a text
    /// frame); `Ok(true)` also for a piece that completed none, as a sign
    /// of life; `Ok(false)` at the end of the body. Cancel-safe.
    pub async fn read_batch(&mut self, batch: &mut FrameBatch) -> Result<bool, FrameError> {
        batch.clear();
        loop {
            let frame = tokio::select! {
                biased;
                frame = self.incoming.frame() => frame,
                ended = &mut self.driver, if !self.driver_done => {
                    self.driver_done = true;
                    match ended {
                        Ok(()) => continue,
                        Err(e) => return Err(FrameError::Io(io::Error::other(e))),
                    }
                }
            };
            let data = match frame {
                None => return Ok(false),
                Some(Err(e)) => return Err(FrameError::Io(io::Error::other(e))),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => data,
                    Err(_) => continue, // trailers
                },
            };
            self.take(&data, batch)?;
            return Ok(true);
        }
    }

    fn take(&mut self, data: &[u8], batch: &mut FrameBatch) -> Result<(), FrameError> {
        let mut chunk = BytesMut::new();
        let mut push = |chunk: &mut BytesMut, text: &[u8]| {
            let start = chunk.len();
            chunk.extend_from_slice(text);
            batch.frames.push((FrameType::Text, start..chunk.len()));
        };
        match &mut self.body {
            Body::Events(parser, labels) => {
                // Each event's data goes into the chunk, its type and id into
                // one buffer for the read's labels (a run of equal ones, as
                // from a stream without ids, shares one).
                let mut which: Vec<usize> = Vec::new();
                let fed = parser.feed_with(data, &mut |event_type, event_data, id| {
                    push(&mut chunk, event_data.as_bytes());
                    if !labels.last_is(event_type, id) {
                        labels.push(event_type, id);
                    }
                    which.push(labels.len() - 1);
                });
                let made = labels.finish();
                batch.labels.extend(which.into_iter().map(|i| made[i].clone()));
                let mut progress = lock(&self.progress);
                parser.last_event_id().clone_into(&mut progress.last_event_id);
                if let Some(retry) = parser.take_retry() {
                    progress.retry = Some(Duration::from_millis(retry));
                }
                fed.map_err(|e| FrameError::FrameTooLarge { len: e.limit + 1, max: e.limit })?;
            }
            Body::Lines(line) => {
                let mut rest = data;
                while let Some(end) = rest.iter().position(|&b| b == b'\n') {
                    line.extend_from_slice(&rest[..end]);
                    rest = &rest[end + 1..];
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    if line.len() > self.max {
                        return Err(FrameError::FrameTooLarge { len: line.len(), max: self.max });
                    }
                    if !line.is_empty() {
                        push(&mut chunk, String::from_utf8_lossy(line).as_bytes());
                    }
                    line.clear();
                }
                if line.len() + rest.len() > self.max {
                    return Err(FrameError::FrameTooLarge { len: line.len() + rest.len(), max: self.max });
                }
                line.extend_from_slice(rest);
            }
        }
        batch.chunk = chunk.freeze();
        Ok(())
    }
}

/// Where and how an HTTP client sends: one POST per message, in order,
/// each answered before the next goes, on a kept-alive connection of its
/// own (the stream holds the other), opened when the first message waits
/// and again after it fails.
pub struct PostWriter {
    /// Where the POSTs go, reached by the stream's route and connector.
    target: super::Target,
    url: Endpoint,
    dialer: Option<super::dial::CustomDialer>,
    headers: Vec<(String, String)>,
    sender_id: String,
    connection: Option<PostConnection>,
}

struct PostConnection {
    sender: hyper::client::conn::http1::SendRequest<http_body_util::Full<Bytes>>,
    driver: Driver<http_body_util::Full<Bytes>>,
    driver_done: bool,
}

impl PostWriter {
    pub fn new(
        target: super::Target,
        url: Endpoint,
        options: &ConnectOptions,
        progress: &SharedProgress,
    ) -> PostWriter {
        let mut progress = lock(progress);
        if progress.sender_id.is_empty() {
            let id: u128 = rand::random();
            progress.sender_id = format!("{id:032x}");
        }
        PostWriter {
            target,
            url,
            dialer: options.dialer.clone(),
            headers: options.headers.clone(),
            sender_id: progress.sender_id.clone(),
            connection: None,
        }
    }

    /// POSTs the batch's unsent messages one by one, marking each sent once
    /// the server answered 2xx. A connection that fails is opened again
    /// once for the same message; a second failure, or a status other than
    /// 2xx, ends the connection (the session reconnects with backoff, and
    /// the message goes again under the same key).
    pub async fn write(&mut self, batch: &mut crate::outbox::Batch) -> io::Result<()> {
        loop {
            let Some((text, body)) = batch.iter_unsent_with_kind().next().map(|(t, p)| (t, Bytes::copy_from_slice(p)))
            else {
                return Ok(());
            };
            let number = batch.next_unsent_number();
            let mut tries = 0;
            let status = loop {
                tries += 1;
                match self.post(number, text, body.clone()).await {
                    Ok(status) => break status,
                    Err(e) if tries == 1 => {
                        crate::log::log_at!(crate::log::Level::Info, "POST to {} failed ({e}); once more", self.url);
                        self.connection = None;
                    }
                    Err(e) => return Err(e),
                }
            };
            if !status.is_success() {
                self.connection = None;
                return Err(io::Error::other(format!("the server answered message {number}'s POST with {status}")));
            }
            batch.mark_sent(1);
        }
    }

    async fn post(&mut self, number: u64, text: bool, body: Bytes) -> io::Result<http::StatusCode> {
        if self.connection.is_none() {
            let options = ConnectOptions { dialer: self.dialer.clone(), ..ConnectOptions::default() };
            let (stream, _) = super::open_stream_to(&self.target, &self.url, &options).await?;
            let io: Box<dyn Stream> = match stream {
                ByteStream::Tcp(tcp) => Box::new(tcp),
                ByteStream::Other(other) => other,
            };
            let (sender, driver) =
                hyper::client::conn::http1::handshake(TokioIo::new(io)).await.map_err(io::Error::other)?;
            self.connection = Some(PostConnection { sender, driver: Box::pin(driver), driver_done: false });
        }
        let connection = self.connection.as_mut().expect("opened above");
        let content_type = if text { "text/plain; charset=utf-8" } else { "application/octet-stream" };
        let mut request = http::Request::post(self.url.resource.as_str())
            .header("host", host_header(&self.url))
            .header("content-type", content_type)
            .header("idempotency-key", format!("\"{}:{number}\"", self.sender_id));
        for (name, value) in &self.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let request = request
            .body(http_body_util::Full::new(body))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("bad request: {e}")))?;
        let response = tokio::select! {
            response = connection.sender.send_request(request) => response.map_err(io::Error::other)?,
            ended = &mut connection.driver, if !connection.driver_done => {
                connection.driver_done = true;
                let why = ended.map_or_else(|e| e.to_string(), |()| "closed".to_string());
                return Err(io::Error::new(io::ErrorKind::ConnectionAborted, format!("the POST connection ended: {why}")));
            }
        };
        let status = response.status();
        // Read the answer's body to its end, so the connection can carry the next POST.
        let mut body = response.into_body();
        loop {
            tokio::select! {
                frame = body.frame() => match frame {
                    None => break,
                    Some(Err(e)) => return Err(io::Error::other(e)),
                    Some(Ok(_)) => {}
                },
                ended = &mut connection.driver, if !connection.driver_done => {
                    connection.driver_done = true;
                    if let Err(e) = ended {
                        return Err(io::Error::other(e));
                    }
                }
            }
        }
        Ok(status)
    }
}

fn host_header(endpoint: &Endpoint) -> String {
    let default_port = if endpoint.scheme.is_tls() { 443 } else { 80 };
    let host = if endpoint.host.contains(':') { format!("[{}]", endpoint.host) } else { endpoint.host.clone() };
    if endpoint.port == default_port {
        host
    } else {
        format!("{host}:{}", endpoint.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 3 "), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO), "a date passed");
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(60));
        let wait = parse_retry_after(&later).unwrap();
        assert!(wait > Duration::from_secs(55) && wait <= Duration::from_secs(60), "{wait:?}");
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn redirects_stay_on_their_scheme() {
        let from = Endpoint::parse("http://a:8080/events?x=1").unwrap();
        assert_eq!(redirected(&from, "/v2/events").unwrap().to_string(), "http://a:8080/v2/events");
        assert_eq!(redirected(&from, "http://b/e").unwrap().to_string(), "http://b:80/e");
        assert!(redirected(&from, "https://b/e").unwrap_err().to_string().contains("not followed across schemes"));
        assert!(redirected(&from, "//b/e").is_err());
        assert!(redirected(&from, "ftp://b/").is_err());
    }

    #[test]
    fn the_request_names_the_host_and_the_last_event_id() {
        let options = ConnectOptions {
            max_frame_size: 1024,
            headers: vec![("Authorization".into(), "Bearer t".into())],
            ..ConnectOptions::default()
        };
        let request = build_request(&Endpoint::parse("http://[::1]:8080/e?a=b").unwrap(), &options, "7-41").unwrap();
        assert_eq!(request.uri(), "/e?a=b");
        assert_eq!(request.headers()["host"], "[::1]:8080");
        assert_eq!(request.headers()["last-event-id"], "7-41");
        assert_eq!(request.headers()["authorization"], "Bearer t");
        let request = build_request(&Endpoint::parse("https://h/").unwrap(), &options, "").unwrap();
        assert_eq!(request.headers()["host"], "h");
        assert!(request.headers().get("last-event-id").is_none(), "never an empty one");
    }
}
