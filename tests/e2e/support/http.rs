//! Minimal HTTP/1.1 over `std::net`: a client for talking to the worker, and
//! the message parsing that the fake origin and the fake Sentry share.
//!
//! Every connection is `Connection: close`; every read is bounded by a
//! deadline, so a misbehaving peer fails a test instead of hanging it.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Header list that keeps order and repeats (`Set-Cookie`), looked up
/// case-insensitively.
#[derive(Clone, Default)]
pub struct Headers(pub Vec<(String, String)>);

impl Headers {
    /// First value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in order.
    pub fn get_all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(k, v)| format!("{k}: {v}")))
            .finish()
    }
}

/// A response as the client saw it.
pub struct Response {
    pub status: u16,
    pub headers: Headers,
    pub body: Vec<u8>,
    /// Time from connecting to having read the whole response.
    pub elapsed: Duration,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {:?}", self.text()))
    }
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut body = self.text();
        if body.len() > 600 {
            let mut cut = 600;
            while !body.is_char_boundary(cut) {
                cut -= 1;
            }
            body.truncate(cut);
            body.push('…');
        }
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body_len", &self.body.len())
            .field("body", &body)
            .field("elapsed", &self.elapsed)
            .finish()
    }
}

/// A request to send to `127.0.0.1:<port>`.
pub struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    timeout: Duration,
}

impl Request {
    pub fn new(method: &str, target: &str) -> Request {
        Request {
            method: method.to_string(),
            target: target.to_string(),
            headers: Vec::new(),
            body: None,
            timeout: Duration::from_secs(30),
        }
    }

    pub fn get(target: &str) -> Request {
        Request::new("GET", target)
    }

    pub fn post(target: &str) -> Request {
        Request::new("POST", target)
    }

    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = Some(body.into());
        self
    }

    /// Deadline for the whole exchange (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Request {
        self.timeout = timeout;
        self
    }

    /// Sends the request and reads the whole response; panics on any I/O
    /// error or when the deadline passes.
    pub fn send(self, port: u16) -> Response {
        let what = format!("{} {} on 127.0.0.1:{port}", self.method, self.target);
        self.try_send(port)
            .unwrap_or_else(|e| panic!("HTTP request {what} failed: {e}"))
    }

    pub fn try_send(self, port: u16) -> io::Result<Response> {
        let head_only = self.method == "HEAD";
        let mut resp = self.try_start(port)?;
        let body = if head_only || resp.status == 204 || resp.status == 304 {
            Vec::new()
        } else {
            read_body(&mut resp.reader, &resp.headers, BodyEnd::Eof)?
        };
        Ok(Response {
            status: resp.status,
            headers: resp.headers,
            body,
            elapsed: resp.started.elapsed(),
        })
    }

    /// Sends the request and reads only the response head; the body is read
    /// incrementally through the returned [`StreamingResponse`].
    pub fn start(self, port: u16) -> StreamingResponse {
        let what = format!("{} {} on 127.0.0.1:{port}", self.method, self.target);
        self.try_start(port)
            .unwrap_or_else(|e| panic!("HTTP request {what} failed: {e}"))
    }

    pub fn try_start(self, port: u16) -> io::Result<StreamingResponse> {
        let started = Instant::now();
        let deadline = started + self.timeout;
        let stream = TcpStream::connect_timeout(
            &([127, 0, 0, 1], port).into(),
            self.timeout.min(Duration::from_secs(5)),
        )?;
        stream.set_nodelay(true).ok();
        let mut head = format!("{} {} HTTP/1.1\r\n", self.method, self.target);
        head.push_str(&format!("Host: 127.0.0.1:{port}\r\n"));
        head.push_str("Connection: close\r\n");
        for (k, v) in &self.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(body) = &self.body {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut writer = stream.try_clone()?;
        writer.set_write_timeout(Some(self.timeout))?;
        writer.write_all(head.as_bytes())?;
        if let Some(body) = &self.body {
            writer.write_all(body)?;
        }
        writer.flush()?;

        let mut reader = DeadlineReader::new(stream, deadline);
        let (status_line, headers) = read_head(&mut reader)?;
        let status = parse_status_line(&status_line)?;
        Ok(StreamingResponse {
            status,
            body: BodyState::new(&headers),
            headers,
            reader,
            started,
        })
    }
}

/// A response whose body has not been read yet.
pub struct StreamingResponse {
    pub status: u16,
    pub headers: Headers,
    reader: DeadlineReader,
    body: BodyState,
    started: Instant,
}

enum BodyState {
    Length(u64),
    /// `left`: bytes left in the current chunk; `first`: no size line read yet.
    Chunked {
        left: u64,
        first: bool,
        done: bool,
    },
    Eof,
}

impl BodyState {
    fn new(headers: &Headers) -> BodyState {
        let chunked = headers
            .get_all("transfer-encoding")
            .iter()
            .any(|v| v.to_ascii_lowercase().contains("chunked"));
        match headers.get("content-length").and_then(|l| l.parse().ok()) {
            _ if chunked => BodyState::Chunked {
                left: 0,
                first: true,
                done: false,
            },
            Some(len) => BodyState::Length(len),
            None => BodyState::Eof,
        }
    }
}

impl StreamingResponse {
    /// Moves the deadline for the reads still to come.
    pub fn set_deadline(&mut self, deadline: Instant) {
        self.reader.deadline = deadline;
    }

    /// Reads exactly `n` body bytes (fails on EOF or at the deadline).
    pub fn read_exact_body(&mut self, n: usize) -> io::Result<Vec<u8>> {
        let mut out = vec![0; n];
        self.read_exact(&mut out)?;
        Ok(out)
    }

    /// Reads the rest of the body.
    pub fn read_rest(&mut self) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        self.read_to_end(&mut out)?;
        Ok(out)
    }
}

/// Reads into `buf` at most `left` more body bytes and counts them off; an early end of the
/// stream is an error named `what`.
fn read_at_most(
    reader: &mut impl Read,
    buf: &mut [u8],
    left: &mut u64,
    what: &str,
) -> io::Result<usize> {
    let want = buf.len().min(*left as usize);
    let n = reader.read(&mut buf[..want])?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            what.to_owned(),
        ));
    }
    *left -= n as u64;
    Ok(n)
}

impl Read for StreamingResponse {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        match &mut self.body {
            BodyState::Eof => self.reader.read(buf),
            BodyState::Length(left) => {
                if *left == 0 {
                    return Ok(0);
                }
                read_at_most(
                    &mut self.reader,
                    buf,
                    left,
                    "body shorter than Content-Length",
                )
            }
            BodyState::Chunked { left, first, done } => {
                if *done {
                    return Ok(0);
                }
                if *left == 0 {
                    if !*first {
                        let crlf = read_line(&mut self.reader)?
                            .ok_or_else(|| invalid("EOF after chunk"))?;
                        if !crlf.is_empty() {
                            return Err(invalid("chunk not followed by CRLF"));
                        }
                    }
                    *first = false;
                    let line =
                        read_line(&mut self.reader)?.ok_or_else(|| invalid("EOF in chunk size"))?;
                    let size = line.split(';').next().unwrap_or("").trim();
                    *left = u64::from_str_radix(size, 16)
                        .map_err(|_| invalid(format!("bad chunk size {line:?}")))?;
                    if *left == 0 {
                        *done = true;
                        while let Some(line) = read_line(&mut self.reader)? {
                            if line.is_empty() {
                                break;
                            }
                        }
                        return Ok(0);
                    }
                }
                read_at_most(&mut self.reader, buf, left, "EOF inside a chunk")
            }
        }
    }
}

fn parse_status_line(line: &str) -> io::Result<u16> {
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let code = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(invalid(format!("bad status line {line:?}")));
    }
    code.parse()
        .map_err(|_| invalid(format!("bad status line {line:?}")))
}

pub fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// A buffered reader whose every read respects one overall deadline.
pub struct DeadlineReader {
    inner: BufReader<TcpStream>,
    deadline: Instant,
}

impl DeadlineReader {
    pub fn new(stream: TcpStream, deadline: Instant) -> DeadlineReader {
        DeadlineReader {
            inner: BufReader::with_capacity(64 * 1024, stream),
            deadline,
        }
    }

    fn arm(&mut self) -> io::Result<()> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"));
        }
        self.inner.get_ref().set_read_timeout(Some(left))
    }
}

fn timed_out(e: io::Error) -> io::Error {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            io::Error::new(io::ErrorKind::TimedOut, "deadline passed while reading")
        }
        _ => e,
    }
}

impl Read for DeadlineReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.arm()?;
        self.inner.read(buf).map_err(timed_out)
    }
}

impl BufRead for DeadlineReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.arm()?;
        self.inner.fill_buf().map_err(timed_out)
    }

    fn consume(&mut self, amt: usize) {
        self.inner.consume(amt)
    }
}

const MAX_HEAD: usize = 64 * 1024;

fn read_line(r: &mut impl BufRead) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    let n = r.take(MAX_HEAD as u64).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        return Err(invalid("line too long or truncated"));
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(line)
        .map(Some)
        .map_err(|_| invalid("non-UTF-8 header line"))
}

/// Reads a start line and headers. `Ok(None)`-like cases (peer closed before
/// sending anything) surface as `UnexpectedEof`.
pub fn read_head(r: &mut impl BufRead) -> io::Result<(String, Headers)> {
    let start = read_line(r)?.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed before head",
        )
    })?;
    let mut headers = Vec::new();
    let mut total = start.len();
    loop {
        let line = read_line(r)?.ok_or_else(|| {
            io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed in head")
        })?;
        if line.is_empty() {
            break;
        }
        total += line.len();
        if total > MAX_HEAD {
            return Err(invalid("head too large"));
        }
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| invalid(format!("bad header line {line:?}")))?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    Ok((start, Headers(headers)))
}

/// How a body without `Content-Length` or chunking ends.
#[derive(Clone, Copy, PartialEq)]
pub enum BodyEnd {
    /// A request: no framing means no body.
    Empty,
    /// A response: it runs to the end of the connection.
    Eof,
}

/// Reads a message body framed by `Transfer-Encoding: chunked`,
/// `Content-Length`, or (per `end`) nothing / end of stream.
pub fn read_body(r: &mut impl BufRead, headers: &Headers, end: BodyEnd) -> io::Result<Vec<u8>> {
    let chunked = headers
        .get_all("transfer-encoding")
        .iter()
        .any(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        return read_chunked(r);
    }
    if let Some(len) = headers.get("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| invalid(format!("bad Content-Length {len:?}")))?;
        let mut body = vec![0; len];
        r.read_exact(&mut body)?;
        return Ok(body);
    }
    let mut body = Vec::new();
    if end == BodyEnd::Eof {
        r.read_to_end(&mut body)?;
    }
    Ok(body)
}

fn read_chunked(r: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(r)?.ok_or_else(|| invalid("EOF in chunk size"))?;
        let size = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| invalid(format!("bad chunk size {line:?}")))?;
        if size == 0 {
            // Trailers, then the empty line.
            while let Some(line) = read_line(r)? {
                if line.is_empty() {
                    break;
                }
            }
            return Ok(body);
        }
        let at = body.len();
        body.resize(at + size, 0);
        r.read_exact(&mut body[at..])?;
        let crlf = read_line(r)?.ok_or_else(|| invalid("EOF after chunk"))?;
        if !crlf.is_empty() {
            return Err(invalid("chunk not followed by CRLF"));
        }
    }
}

/// A request as a server read it.
#[derive(Clone)]
pub struct ServerRequest {
    pub method: String,
    /// Path and query, exactly as on the request line.
    pub target: String,
    pub headers: Headers,
    pub body: Vec<u8>,
    /// The head bytes as received (start line + headers), for byte searches.
    pub raw_head: String,
}

impl ServerRequest {
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }
}

impl fmt::Debug for ServerRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerRequest")
            .field("method", &self.method)
            .field("target", &self.target)
            .field("headers", &self.headers)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// Reads one request from a server-side connection.
pub fn read_request(r: &mut impl BufRead) -> io::Result<ServerRequest> {
    let (start, headers) = read_head(r)?;
    let mut parts = start.split(' ');
    let (method, target, version) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v), None) => (m, t, v),
        _ => return Err(invalid(format!("bad request line {start:?}"))),
    };
    if !version.starts_with("HTTP/1.") {
        return Err(invalid(format!("bad request line {start:?}")));
    }
    let mut raw_head = format!("{start}\r\n");
    for (k, v) in &headers.0 {
        raw_head.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = read_body(r, &headers, BodyEnd::Empty)?;
    Ok(ServerRequest {
        method: method.to_string(),
        target: target.to_string(),
        headers,
        body,
        raw_head,
    })
}

pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// Writes a complete `Connection: close` response with a Content-Length body.
pub fn write_response(
    w: &mut impl Write,
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<()> {
    write_response_head(w, status, headers, body.len())?;
    w.write_all(body)?;
    w.flush()
}

pub fn write_response_head(
    w: &mut impl Write,
    status: u16,
    headers: &[(&str, &str)],
    content_length: usize,
) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status));
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {content_length}\r\nConnection: close\r\n\r\n"
    ));
    w.write_all(head.as_bytes())
}
