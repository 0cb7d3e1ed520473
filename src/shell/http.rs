//! A small HTTP/1.1 client for firmware downloads and log uploads: GET over TCP or TLS
//! (rustls, the same trust as the CSMS connection), resuming a partial file with `Range`,
//! following redirects, giving up on a transfer that stalls; POST (multipart) or PUT of a
//! file. Basic auth from the URL's `user:password@`. Enough for what the agent moves; no
//! keep-alive, no compression.

use crate::ocpp::firmware::redacted;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Redirects followed for one transfer; the next one fails it.
pub const MAX_REDIRECTS: usize = 5;
/// Trailer lines accepted after the last chunk.
const MAX_TRAILERS: usize = 100;

/// What a transfer needs besides the URL.
#[derive(Clone)]
pub struct Fetch {
    /// Trust for https:// URLs.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// No byte for this long: the transfer failed.
    pub stall_timeout: Duration,
    /// Refuse a file larger than this (downloads).
    pub max_bytes: u64,
}

/// The trust and patience of transfers, from `[transfer]`.
#[derive(Clone)]
pub struct Transfer {
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub stall_timeout: Duration,
}

/// A parsed http(s) URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path and query, starting with '/'.
    pub target: String,
    /// `Authorization: Basic` credentials from the URL's user information (base64).
    pub basic_auth: Option<String>,
}

impl Url {
    pub fn parse(url: &str) -> Result<Url, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(format!(
                "{:?} is not an http:// or https:// URL",
                redacted(url)
            ));
        };
        let (authority, target) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_owned()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_owned()),
        };
        let target = target.split('#').next().unwrap_or("/").to_owned();
        let (basic_auth, authority) = match authority.rsplit_once('@') {
            Some((userinfo, host)) => {
                let decoded = percent_decode(userinfo).ok_or_else(|| {
                    "bad percent-encoding in the URL's user information".to_string()
                })?;
                (Some(super::ws::basic_credentials(&decoded)), host)
            }
            None => (None, authority),
        };
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or("unclosed '[' in the host")?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| format!("bad port {p:?}"))?,
                None if after.is_empty() => default_port,
                None => return Err(format!("bad authority {authority:?}")),
            };
            (h.to_owned(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (
                    h.to_owned(),
                    p.parse().map_err(|_| format!("bad port {p:?}"))?,
                ),
                None => (authority.to_owned(), default_port),
            }
        };
        let unfit = |c: char| c.is_whitespace() || c.is_control();
        // An IP literal holds only an IPv6 (or IPv4-mapped) address; any other host none of
        // the delimiters (RFC 3986 3.2.2): "h]x:80" would print as "[h]x]:80" and mean another
        // host. Found by fuzzing (seeds/http_response/host-with-brackets).
        let host_ok = if authority.starts_with('[') {
            host.chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        } else {
            !host.chars().any(|c| unfit(c) || "[]:/?#@".contains(c))
        };
        if host.is_empty() || !host_ok || target.chars().any(unfit) {
            return Err(format!("{:?} is not a valid URL", redacted(url)));
        }
        Ok(Url {
            tls,
            host,
            port,
            target,
            basic_auth,
        })
    }

    /// `Host` header value.
    fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == if self.tls { 443 } else { 80 } {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// The request line and the headers every request has, without the final empty line.
    fn request_head(&self, method: &str) -> String {
        let mut head = format!(
            "{method} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: ocpp-agent/{}\r\nConnection: close\r\n",
            self.target,
            self.host_header(),
            env!("CARGO_PKG_VERSION")
        );
        if let Some(auth) = &self.basic_auth {
            head.push_str(&format!("Authorization: Basic {auth}\r\n"));
        }
        head
    }

    /// Resolves a Location header against this URL (RFC 3986 5.2: absolute, scheme-relative
    /// `//host/...`, absolute-path, query-only and relative references, dot segments removed).
    /// Only http:// and https:// are followed, never from https:// down to http://, and the
    /// credentials go only to the same origin (scheme, host and port).
    fn join(&self, location: &str) -> Result<Url, String> {
        let location = location.trim();
        let location = location.split('#').next().unwrap_or("");
        let scheme = if self.tls { "https" } else { "http" };
        let absolute = if location.starts_with("//") {
            Some(format!("{scheme}:{location}"))
        } else if location.starts_with("http://") || location.starts_with("https://") {
            Some(location.to_owned())
        } else if location.contains(':')
            && location
                .split(['/', '?'])
                .next()
                .is_some_and(|first| first.contains(':'))
        {
            // A scheme of its own (ftp:, file:, ...): RFC 3986 4.2 reads a colon in the first
            // segment as a scheme.
            return Err(format!(
                "refusing a redirect to {:?}: not http:// or https://",
                redacted(location)
            ));
        } else {
            None
        };
        if let Some(absolute) = absolute {
            let mut next = Url::parse(&absolute)?;
            if self.tls && !next.tls {
                return Err("refusing a redirect from https:// to http://".into());
            }
            if next.basic_auth.is_none()
                && next.host == self.host
                && next.port == self.port
                && next.tls == self.tls
            {
                next.basic_auth = self.basic_auth.clone();
            }
            return Ok(next);
        }
        let (path, _query) = self.target.split_once('?').unwrap_or((&self.target, ""));
        let target = if location.is_empty() {
            self.target.clone()
        } else if location.starts_with('?') {
            format!("{path}{location}")
        } else {
            let (ref_path, ref_query) = match location.split_once('?') {
                Some((p, q)) => (p, Some(q)),
                None => (location, None),
            };
            let merged = if ref_path.starts_with('/') {
                ref_path.to_owned()
            } else {
                let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
                format!("{dir}/{ref_path}")
            };
            let mut target = remove_dot_segments(&merged);
            if let Some(q) = ref_query {
                target.push('?');
                target.push_str(q);
            }
            target
        };
        if target.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("bad redirect Location {:?}", redacted(location)));
        }
        Ok(Url {
            target,
            ..self.clone()
        })
    }
}

/// The URL without its credentials (they are not shown in logs).
impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.host_header(), self.target)
    }
}

/// RFC 3986 5.2.4 for an absolute path: `.` and `..` segments resolved (`..` never above
/// the root).
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *segment {
            "." | ".." => {
                if *segment == ".." {
                    out.pop();
                }
                // A trailing dot segment leaves a directory: "/a/b/.." is "/a/".
                if last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

/// Where a redirect leads: `location` (the Location header) resolved against `current`, once
/// `followed` redirects were followed for this transfer (a redirect beyond
/// [`MAX_REDIRECTS`] fails the transfer). Public for the fuzz target `http_response`.
pub fn redirect_target(current: &Url, location: &str, followed: usize) -> Result<Url, String> {
    if followed >= MAX_REDIRECTS {
        return Err(format!("more than {MAX_REDIRECTS} redirects"));
    }
    current.join(location)
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Downloads `url` into `part`, continuing what `part` already holds. Returns the file size.
/// On an error the bytes received so far stay in `part`, so the next attempt resumes.
pub async fn download(url: &str, part: &Path, fetch: &Fetch) -> Result<u64, String> {
    if url.starts_with("ftp://") {
        return super::ftp::download(url, part, fetch).await;
    }
    let mut url = Url::parse(url)?;
    let mut followed = 0;
    loop {
        let have = tokio::fs::metadata(part)
            .await
            .map(|m| m.len())
            .unwrap_or(0);
        match get(&url, part, have, fetch).await? {
            Outcome::Done(size) => return Ok(size),
            Outcome::Redirect(location) => {
                url = redirect_target(&url, &location, followed)?;
                followed += 1;
            }
        }
    }
}

enum Outcome {
    Done(u64),
    Redirect(String),
}

async fn connect(url: &Url, fetch: &Fetch) -> Result<Box<dyn Stream>, String> {
    let tcp = tokio::time::timeout(
        fetch.stall_timeout,
        TcpStream::connect((url.host.as_str(), url.port)),
    )
    .await
    .map_err(|_| format!("connecting to {}:{} timed out", url.host, url.port))?
    .map_err(|e| format!("connecting to {}:{}: {e}", url.host, url.port))?;
    let _ = tcp.set_nodelay(true);
    if !url.tls {
        return Ok(Box::new(tcp));
    }
    let config = fetch
        .tls
        .clone()
        .ok_or("https:// needs trusted CA certificates (csms.ca_file or the system roots)")?;
    let name = rustls::pki_types::ServerName::try_from(url.host.clone())
        .map_err(|e| format!("host {:?}: {e}", url.host))?;
    let tls = tokio::time::timeout(
        fetch.stall_timeout,
        tokio_rustls::TlsConnector::from(config).connect(name, tcp),
    )
    .await
    .map_err(|_| "the TLS handshake timed out".to_string())?
    .map_err(|e| format!("TLS: {e}"))?;
    Ok(Box::new(tls))
}

/// Where the validator of a partial download is kept: a resumed transfer must continue the
/// same file, not a newer one that happens to be at the same URL.
pub fn validator_path(part: &Path) -> std::path::PathBuf {
    part.with_extension("validator")
}

async fn get(url: &Url, part: &Path, have: u64, fetch: &Fetch) -> Result<Outcome, String> {
    // Without a validator the partial file cannot be trusted to belong to this file.
    let validator = tokio::fs::read_to_string(validator_path(part)).await.ok();
    let have = if validator.is_some() { have } else { 0 };
    let stream = connect(url, fetch).await?;
    let mut stream = BufReader::new(stream);
    let mut request = url.request_head("GET") + "Accept-Encoding: identity\r\n";
    if let (true, Some(v)) = (have > 0, &validator) {
        // RFC 9110 13.1.5: the rest if the file is unchanged, else the whole new file (200).
        request.push_str(&format!(
            "Range: bytes={have}-\r\nIf-Range: {}\r\n",
            v.trim()
        ));
    }
    request.push_str("\r\n");
    let io = |e: std::io::Error| format!("HTTP: {e}");
    let stall = fetch.stall_timeout;
    send(stream.get_mut(), request.as_bytes(), stall).await?;

    let head = read_final_head(&mut stream, stall).await?;
    let mut start = 0;
    let total = match head.status {
        200 => head.content_length,
        206 => {
            let (from, total) = head
                .content_range
                .ok_or("206 without a usable Content-Range")?;
            if from != have {
                return Err(format!("the server resumed at {from}, not at {have}"));
            }
            start = have;
            total
        }
        // Asked for bytes past the end: what we have is the whole file if the server says so.
        416 if have > 0 => match head.range_total {
            Some(total) if total == have => return Ok(Outcome::Done(have)),
            _ => {
                tokio::fs::remove_file(part).await.map_err(io)?;
                return Err("the partial download does not match the file; starting over".into());
            }
        },
        301 | 302 | 303 | 307 | 308 => {
            return head
                .location
                .map(Outcome::Redirect)
                .ok_or_else(|| format!("HTTP {} without Location", head.status));
        }
        status => return Err(format!("HTTP {status} {}", head.reason)),
    };
    if start == 0 {
        // A fresh start: remember what identifies this file for a later resume.
        let path = validator_path(part);
        match &head.validator {
            Some(v) => tokio::fs::write(&path, v)
                .await
                .map_err(|e| format!("{}: {e}", path.display()))?,
            None => {
                let _ = tokio::fs::remove_file(&path).await;
            }
        }
    }
    let mut file = PartFile::open(part, start, total, fetch.max_bytes).await?;
    let body_length = if head.chunked {
        None
    } else {
        head.content_length
    };
    let mut buf = vec![0u8; 16 * 1024];
    let mut pace = Pace::new(stall);
    let mut chunked = head.chunked.then(ChunkedDecoder::new);
    let mut body_read: u64 = 0;
    loop {
        if let Some(len) = body_length {
            if body_read >= len {
                break;
            }
        }
        let want = match body_length {
            Some(len) => (len - body_read).min(buf.len() as u64) as usize,
            None => buf.len(),
        };
        let n = with_timeout(stall, stream.read(&mut buf[..want]))
            .await?
            .map_err(io)?;
        if n == 0 {
            if body_length.is_none() && chunked.is_none() {
                break; // the body ends with the connection
            }
            return Err(file.cut_short().await);
        }
        pace.moved(n)?;
        let Some(decoder) = chunked.as_mut() else {
            body_read += n as u64;
            file.write(&buf[..n]).await?;
            continue;
        };
        // The read may hold framing, data of several chunks and the end of the body.
        let mut at = 0;
        while at < n && !decoder.is_done() {
            let (used, data) = decoder.advance(&buf[at..n])?;
            at += used;
            body_read += data.len() as u64;
            file.write(data).await?;
        }
        if decoder.is_done() {
            break;
        }
    }
    let written = file.finish().await?;
    Ok(Outcome::Done(written))
}

/// Writes and flushes `bytes`, failing after `stall` without progress.
async fn send<W: AsyncWrite + Unpin + ?Sized>(
    w: &mut W,
    bytes: &[u8],
    stall: Duration,
) -> Result<(), String> {
    let io = |e: std::io::Error| format!("HTTP: {e}");
    with_timeout(stall, w.write_all(bytes)).await?.map_err(io)?;
    with_timeout(stall, w.flush()).await?.map_err(io)
}

/// Progress that must be made: at least [`Pace::MIN_BYTES`] per stall-timeout window, so a
/// server that sends a byte just before each timeout cannot hold a transfer forever.
pub struct Pace {
    window: Duration,
    started: std::time::Instant,
    bytes: u64,
}

impl Pace {
    pub const MIN_BYTES: u64 = 1024;

    pub fn new(window: Duration) -> Pace {
        Pace {
            window,
            started: std::time::Instant::now(),
            bytes: 0,
        }
    }

    /// Counts `n` bytes moved; an error once a whole window moved too little.
    pub fn moved(&mut self, n: usize) -> Result<(), String> {
        self.bytes += n as u64;
        if self.started.elapsed() >= self.window {
            if self.bytes < Self::MIN_BYTES {
                return Err(format!(
                    "too slow: {} bytes in {} s",
                    self.bytes,
                    self.window.as_secs()
                ));
            }
            self.started = std::time::Instant::now();
            self.bytes = 0;
        }
        Ok(())
    }
}

/// The partial file of a download: appends what arrives, enforces the size limit, and on a
/// write error (a full disk) removes itself so the next attempt starts over with room.
pub struct PartFile<'a> {
    path: &'a Path,
    file: tokio::fs::File,
    written: u64,
    total: Option<u64>,
    max_bytes: u64,
}

impl<'a> PartFile<'a> {
    /// Opens `path` to continue at `start` (0: from scratch); `total` is the file's full size
    /// when the server said it.
    pub async fn open(
        path: &'a Path,
        start: u64,
        total: Option<u64>,
        max_bytes: u64,
    ) -> Result<PartFile<'a>, String> {
        if let Some(total) = total {
            if total > max_bytes {
                return Err(format!(
                    "the file has {total} bytes, more than firmware.max_bytes ({max_bytes})"
                ));
            }
        }
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(start == 0)
            .append(start > 0)
            .open(path)
            .await
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(PartFile {
            path,
            file,
            written: start,
            total,
            max_bytes,
        })
    }

    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.written += bytes.len() as u64;
        if self.written > self.max_bytes {
            return Err(format!(
                "the file is larger than firmware.max_bytes ({})",
                self.max_bytes
            ));
        }
        if let Err(e) = self.file.write_all(bytes).await {
            let _ = tokio::fs::remove_file(self.path).await;
            return Err(format!("{}: {e}", self.path.display()));
        }
        Ok(())
    }

    /// The transfer ended early: keep what came for the next attempt, and say how far it got.
    pub async fn cut_short(mut self) -> String {
        let _ = self.file.flush().await;
        format!(
            "the connection closed after {} bytes{}",
            self.written,
            self.total.map(|t| format!(" of {t}")).unwrap_or_default()
        )
    }

    /// The transfer is complete: make it durable and check its size. Returns the size.
    pub async fn finish(mut self) -> Result<u64, String> {
        let describe = |e: std::io::Error| format!("{}: {e}", self.path.display());
        self.file.flush().await.map_err(describe)?;
        self.file.sync_all().await.map_err(describe)?;
        match self.total {
            Some(total) if total != self.written => {
                Err(format!("received {} bytes of {total}", self.written))
            }
            _ => Ok(self.written),
        }
    }
}

async fn with_timeout<F: std::future::Future>(limit: Duration, f: F) -> Result<F::Output, String> {
    tokio::time::timeout(limit, f)
        .await
        .map_err(|_| format!("no data for {} s", limit.as_secs()))
}

/// What the client uses of a response head ([`parse_head`]).
#[derive(Debug)]
pub struct Head {
    pub status: u16,
    reason: String,
    content_length: Option<u64>,
    /// (first byte, total) of a 206's Content-Range.
    content_range: Option<(u64, Option<u64>)>,
    /// The total of a 416's `Content-Range: bytes */TOTAL`.
    range_total: Option<u64>,
    location: Option<String>,
    chunked: bool,
    /// A strong validator of the file (ETag, else Last-Modified), for `If-Range`.
    validator: Option<String>,
}

async fn read_line<R: AsyncBufReadExt + Unpin>(
    r: &mut R,
    stall: Duration,
) -> Result<String, String> {
    let mut line = Vec::new();
    let n = with_timeout(
        stall,
        r.take(MAX_HEADER_BYTES as u64).read_until(b'\n', &mut line),
    )
    .await?
    .map_err(|e| format!("HTTP: {e}"))?;
    if n == 0 || !line.ends_with(b"\n") {
        return Err("the connection closed in the HTTP header".into());
    }
    let text = String::from_utf8_lossy(&line);
    Ok(text.trim_end_matches(['\r', '\n']).to_owned())
}

async fn read_head<R: AsyncBufReadExt + Unpin>(r: &mut R, stall: Duration) -> Result<Head, String> {
    // The head's lines, up to the empty one, then httparse reads them.
    let mut raw = Vec::new();
    loop {
        let line = read_line(r, stall).await?;
        raw.extend_from_slice(line.as_bytes());
        raw.extend_from_slice(b"\r\n");
        if raw.len() > MAX_HEADER_BYTES {
            return Err("the HTTP header is too large".into());
        }
        if line.is_empty() {
            break;
        }
    }
    parse_head(&raw)
}

/// Headers a response head may have.
const MAX_HEADERS: usize = 64;

/// A complete HTTP/1.x response head (status line, headers, empty line), read by httparse;
/// the headers the client uses are taken from it. Public for the fuzz target `http_response`.
pub fn parse_head(raw: &[u8]) -> Result<Head, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let status_line = || {
        let end = raw.iter().position(|&b| b == b'\r').unwrap_or(raw.len());
        String::from_utf8_lossy(&raw[..end.min(200)]).into_owned()
    };
    match response.parse(raw) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err("the HTTP header is incomplete".into()),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(format!("more than {MAX_HEADERS} HTTP header lines"));
        }
        Err(httparse::Error::Version) => {
            return Err(format!("not an HTTP/1.x response: {:?}", status_line()));
        }
        Err(e) => return Err(format!("bad HTTP response head ({e}): {:?}", status_line())),
    }
    let status = response.code.unwrap_or(0);
    // RFC 9110 15: three digits, 100-599 (httparse takes "002" as 2). Found by fuzzing.
    if !(100..=599).contains(&status) {
        return Err(format!("bad HTTP status {status:03}: {:?}", status_line()));
    }
    let mut head = Head {
        status,
        reason: response.reason.unwrap_or("").to_owned(),
        content_length: None,
        content_range: None,
        range_total: None,
        location: None,
        chunked: false,
        validator: None,
    };
    for header in response.headers.iter() {
        let value = String::from_utf8_lossy(header.value);
        let value = value.trim();
        match header.name.to_ascii_lowercase().as_str() {
            "content-length" => {
                head.content_length = Some(
                    value
                        .parse()
                        .map_err(|_| format!("bad Content-Length {value:?}"))?,
                )
            }
            "transfer-encoding" => {
                head.chunked = value.to_ascii_lowercase().contains("chunked");
            }
            "location" => head.location = Some(value.to_owned()),
            // A weak ETag cannot be used in If-Range (RFC 9110 13.1.5).
            "etag" if !value.starts_with("W/") => head.validator = Some(value.to_owned()),
            "last-modified" if head.validator.is_none() => head.validator = Some(value.to_owned()),
            "content-range" => {
                // bytes FIRST-LAST/TOTAL, or bytes */TOTAL
                let spec = value.strip_prefix("bytes ").unwrap_or("");
                let (range, total) = spec.split_once('/').unwrap_or((spec, "*"));
                let total = total.parse().ok();
                if range == "*" {
                    head.range_total = total;
                } else if let Some(first) = range.split('-').next().and_then(|f| f.parse().ok()) {
                    head.content_range = Some((first, total));
                }
            }
            _ => {}
        }
    }
    Ok(head)
}

/// The final response head: interim 1xx responses (RFC 9110 15.2) are skipped.
async fn read_final_head<R: AsyncBufReadExt + Unpin>(
    r: &mut R,
    stall: Duration,
) -> Result<Head, String> {
    for _ in 0..8 {
        let head = read_head(r, stall).await?;
        if !(100..200).contains(&head.status) {
            return Ok(head);
        }
    }
    Err("too many interim (1xx) responses".into())
}

/// The chunked transfer coding (RFC 9112 7.1) undone, sans I/O: fed the bytes after the
/// response head as they arrive, in reads of any size, it hands out the body's bytes (as
/// slices of its input: no copy) and says when the body ended (the last chunk and the
/// trailers read). Public for the fuzz target `http_response`.
#[derive(Debug, Default)]
pub struct ChunkedDecoder {
    state: ChunkState,
    /// The line being read (a chunk size, the end of a chunk's data, a trailer), across reads.
    line: Vec<u8>,
    trailers: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Reading a chunk-size line.
    #[default]
    Size,
    /// In a chunk's data: this many bytes left.
    Data(u64),
    /// Reading the line end after a chunk's data.
    DataEnd,
    /// Reading trailer lines, up to the empty one.
    Trailers,
    /// The body ended.
    Done,
}

impl ChunkedDecoder {
    pub fn new() -> ChunkedDecoder {
        ChunkedDecoder::default()
    }

    /// Whether the body ended; the decoder takes no more input then.
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Takes what it can of `input` (not empty, body not ended): returns how many bytes it
    /// used (at least one) and the body bytes among them (a slice of `input`, maybe empty).
    /// Bytes after the end of the body are not used.
    pub fn advance<'a>(&mut self, input: &'a [u8]) -> Result<(usize, &'a [u8]), String> {
        if let ChunkState::Data(left) = self.state {
            let take = left.min(input.len() as u64) as usize;
            self.state = if take as u64 == left {
                ChunkState::DataEnd
            } else {
                ChunkState::Data(left - take as u64)
            };
            return Ok((take, &input[..take]));
        }
        if self.state == ChunkState::Done {
            return Ok((0, &[]));
        }
        // A line: take up to its '\n', keeping a partial line for the next read.
        let Some(end) = input.iter().position(|&b| b == b'\n') else {
            self.add_to_line(input)?;
            return Ok((input.len(), &[]));
        };
        self.add_to_line(&input[..end])?;
        let mut line = std::mem::take(&mut self.line);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        match self.state {
            ChunkState::Size => {
                let size = parse_chunk_size(&String::from_utf8_lossy(&line))?;
                self.state = if size == 0 {
                    ChunkState::Trailers
                } else {
                    ChunkState::Data(size)
                };
            }
            ChunkState::DataEnd if line.is_empty() => self.state = ChunkState::Size,
            ChunkState::DataEnd => {
                return Err("bad chunked body: no line end after a chunk's data".into());
            }
            ChunkState::Trailers if line.is_empty() => self.state = ChunkState::Done,
            ChunkState::Trailers => {
                self.trailers += 1;
                if self.trailers > MAX_TRAILERS {
                    return Err("too many chunked trailer lines".into());
                }
            }
            ChunkState::Data(_) | ChunkState::Done => unreachable!("handled above"),
        }
        self.line = line;
        self.line.clear();
        Ok((end + 1, &[]))
    }

    /// [`advance`](Self::advance) over all of `input`, the body's bytes appended to `body`:
    /// returns the bytes used (fewer than `input.len()` only when the body ended in it).
    pub fn feed(&mut self, input: &[u8], body: &mut Vec<u8>) -> Result<usize, String> {
        let mut used = 0;
        while used < input.len() && !self.is_done() {
            let (n, data) = self.advance(&input[used..])?;
            used += n;
            body.extend_from_slice(data);
        }
        Ok(used)
    }

    fn add_to_line(&mut self, bytes: &[u8]) -> Result<(), String> {
        if self.line.len() + bytes.len() > MAX_HEADER_BYTES {
            return Err("a chunked body's line is too long".into());
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }
}

/// A chunk-size line (RFC 9112 7.1, extensions ignored), without its line end, read by
/// httparse. Public for the fuzz target `http_response`.
pub fn parse_chunk_size(line: &str) -> Result<u64, String> {
    // httparse reads an empty line as size 0, which would end the body early.
    if !line.starts_with(|c: char| c.is_ascii_hexdigit()) {
        return Err(format!("bad chunk size {line:?}"));
    }
    let framed = format!("{line}\r\n");
    match httparse::parse_chunk_size(framed.as_bytes()) {
        Ok(httparse::Status::Complete((_, size))) => Ok(size),
        _ => Err(format!("bad chunk size {line:?}")),
    }
}

/// Decodes `%XX` escapes.
pub(super) fn percent_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Why an upload failed: the HTTP status when the server answered.
#[derive(Debug)]
pub struct UploadError {
    pub status: Option<u16>,
    pub message: String,
}

impl From<String> for UploadError {
    fn from(message: String) -> Self {
        UploadError {
            status: None,
            message,
        }
    }
}

/// Uploads `file` to `url` as `filename`: a multipart/form-data POST (N01.FR.19), or a PUT
/// when the server does not take POST (405/501) (N01.FR.18).
pub async fn upload(
    url: &str,
    filename: &str,
    file: &Path,
    fetch: &Fetch,
) -> Result<(), UploadError> {
    if url.starts_with("ftp://") {
        return super::ftp::upload(url, filename, file, fetch).await;
    }
    let url = Url::parse(url)?;
    match send_file(&url, "POST", filename, file, fetch).await {
        Err(UploadError {
            status: Some(405 | 501),
            ..
        }) => send_file(&url, "PUT", filename, file, fetch).await,
        other => other,
    }
}

async fn send_file(
    url: &Url,
    method: &str,
    filename: &str,
    file: &Path,
    fetch: &Fetch,
) -> Result<(), UploadError> {
    let io = |e: std::io::Error| format!("HTTP: {e}");
    let size = tokio::fs::metadata(file)
        .await
        .map_err(|e| format!("{}: {e}", file.display()))?
        .len();
    // Quotes and line breaks cannot appear in our file names; keep the header sound anyway.
    let safe_name: String = filename
        .chars()
        .filter(|c| !matches!(c, '"' | '\\' | '\r' | '\n'))
        .collect();
    // A random boundary cannot collide with the log's content by accident.
    let mut random = [0u8; 12];
    getrandom::fill(&mut random).map_err(|e| format!("random: {e}"))?;
    let boundary: String = random.iter().fold("ocpp-agent-".to_owned(), |mut b, x| {
        b.push_str(&format!("{x:02x}"));
        b
    });
    let (preamble, epilogue, content_type) = if method == "POST" {
        (
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{safe_name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            ),
            format!("\r\n--{boundary}--\r\n"),
            format!("multipart/form-data; boundary={boundary}"),
        )
    } else {
        (
            String::new(),
            String::new(),
            "application/octet-stream".to_owned(),
        )
    };
    let length = preamble.len() as u64 + size + epilogue.len() as u64;
    let mut head = url.request_head(method);
    head.push_str(&format!(
        "Content-Type: {content_type}\r\nContent-Length: {length}\r\n"
    ));
    if method == "PUT" {
        head.push_str(&format!(
            "Content-Disposition: attachment; filename=\"{safe_name}\"\r\n"
        ));
    }
    head.push_str("\r\n");
    head.push_str(&preamble);

    let stall = fetch.stall_timeout;
    let mut source = tokio::fs::File::open(file)
        .await
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let stream = connect(url, fetch).await?;
    let mut stream = BufReader::new(stream);
    let sent: Result<(), String> = async {
        send(stream.get_mut(), head.as_bytes(), stall).await?;
        let mut buf = vec![0u8; 16 * 1024];
        let mut pace = Pace::new(stall);
        loop {
            let n = source.read(&mut buf).await.map_err(io)?;
            if n == 0 {
                break;
            }
            pace.moved(n)?;
            with_timeout(stall, stream.get_mut().write_all(&buf[..n]))
                .await?
                .map_err(io)?;
        }
        send(stream.get_mut(), epilogue.as_bytes(), stall).await
    }
    .await;
    let head = match sent {
        Ok(()) => read_final_head(&mut stream, stall).await?,
        // A server may answer (401, 413, ...) and close before taking the whole body: its
        // answer, if it came, says more than the broken pipe.
        Err(why) => {
            match tokio::time::timeout(Duration::from_secs(2), read_final_head(&mut stream, stall))
                .await
            {
                Ok(Ok(head)) if head.status >= 300 => head,
                _ => return Err(why.into()),
            }
        }
    };
    if (200..300).contains(&head.status) {
        Ok(())
    } else {
        Err(UploadError {
            status: Some(head.status),
            message: format!("{method}: HTTP {} {}", head.status, head.reason),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{
        ChunkedDecoder, Fetch, MAX_HEADERS, MAX_REDIRECTS, Url, parse_chunk_size, parse_head,
        redirect_target, upload,
    };
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server for one connection: it reads the start of the request, then `respond`
    /// plays the rest. Returns its port.
    async fn one_shot<F, Fut>(respond: F) -> u16
    where
        F: FnOnce(tokio::net::TcpStream) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let _ = sock.read(&mut buf).await;
            respond(sock).await;
        });
        port
    }

    /// A server that drips a byte just before every stall timeout cannot hold a download:
    /// less than `Pace::MIN_BYTES` in a window fails the attempt.
    #[tokio::test]
    async fn a_dripping_server_fails_the_attempt() {
        let port = one_shot(|mut sock| async move {
            let head = "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\nETag: \"x\"\r\n\r\n";
            sock.write_all(head.as_bytes()).await.unwrap();
            for _ in 0..100 {
                tokio::time::sleep(Duration::from_millis(300)).await;
                if sock.write_all(b"x").await.is_err() {
                    return;
                }
            }
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("1.part");
        let fetch = Fetch {
            tls: None,
            stall_timeout: Duration::from_secs(1),
            max_bytes: 1 << 30,
        };
        let started = std::time::Instant::now();
        let url = format!("http://127.0.0.1:{port}/fw.bin");
        let err = super::download(&url, &part, &fetch).await.unwrap_err();
        assert!(err.contains("too slow"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    /// A server that refuses the upload at once and closes without reading the body: the
    /// refusal (401) is what counts, not the broken pipe.
    #[tokio::test]
    async fn an_early_refusal_is_read_even_when_the_body_is_cut() {
        let port = one_shot(|mut sock| async move {
            sock.write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")
                .await
                .unwrap();
            let _ = sock.shutdown().await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("big.log");
        std::fs::write(&file, vec![b'x'; 8 << 20]).unwrap();
        let fetch = Fetch {
            tls: None,
            stall_timeout: Duration::from_secs(10),
            max_bytes: 1 << 30,
        };
        let url = format!("http://127.0.0.1:{port}/up");
        let err = upload(&url, "big.log", &file, &fetch).await.unwrap_err();
        assert_eq!(err.status, Some(401), "{}", err.message);
    }

    /// A redirect to a relative Location, then a chunked body sent in pieces that split a
    /// chunk-size line, a chunk's data and the line ends: the file holds exactly the data.
    #[tokio::test]
    async fn a_redirect_then_a_chunked_body_download_whole() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let mut requests = Vec::new();
            for answer in [
                &[&b"HTTP/1.1 302 Found\r\nLocation: ../files/fw.bin\r\nContent-Length: 0\r\n\r\n"[..]][..],
                &[
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nETag: \"e\"\r\n\r\n1",
                    b"0\r\nfirmware-0",
                    b"123456",
                    b"\r",
                    b"\n3;x=y\r\nabc\r\n0\r\nChecksum: none\r\n\r\n",
                ],
            ] {
                let (mut sock, _) = listener.accept().await.unwrap();
                let mut buf = vec![0u8; 4096];
                let n = sock.read(&mut buf).await.unwrap();
                requests.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                for piece in answer {
                    sock.write_all(piece).await.unwrap();
                    sock.flush().await.unwrap();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            requests
        });
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("fw.part");
        let fetch = Fetch {
            tls: None,
            stall_timeout: Duration::from_secs(5),
            max_bytes: 1 << 20,
        };
        let url = format!("http://127.0.0.1:{port}/dl/start");
        let size = super::download(&url, &part, &fetch).await.unwrap();
        assert_eq!(std::fs::read(&part).unwrap(), b"firmware-0123456abc");
        assert_eq!(size, 19);
        let requests = server.await.unwrap();
        assert!(
            requests[1].starts_with("GET /files/fw.bin HTTP/1.1\r\n"),
            "{}",
            requests[1]
        );
    }

    #[test]
    fn response_heads_are_read_by_httparse() {
        let head = parse_head(
            b"HTTP/1.1 206 Partial Content\r\nContent-Length: 10\r\ncontent-range: bytes 5-14/15\r\n\
              ETag: \"v1\"\r\nTransfer-Encoding: gzip, chunked\r\nLocation: /next\r\n\r\n",
        )
        .unwrap();
        assert_eq!(head.status, 206);
        assert_eq!(head.reason, "Partial Content");
        assert_eq!(head.content_length, Some(10));
        assert_eq!(head.content_range, Some((5, Some(15))));
        assert!(head.chunked);
        assert_eq!(head.validator.as_deref(), Some("\"v1\""));
        assert_eq!(head.location.as_deref(), Some("/next"));
        // No reason phrase; a weak ETag is no validator, Last-Modified is.
        let head = parse_head(
            b"HTTP/1.0 416\r\nETag: W/\"x\"\r\nLast-Modified: Tue, 01 Dec 2026 10:00:00 GMT\r\n\
              Content-Range: bytes */99\r\n\r\n",
        )
        .unwrap();
        assert_eq!((head.status, head.reason.as_str()), (416, ""));
        assert_eq!(head.range_total, Some(99));
        assert!(head.validator.unwrap().starts_with("Tue"));
        for bad in [
            &b"HTTP/2 200 OK\r\n\r\n"[..],
            b"ICY 200 OK\r\n\r\n",
            b"HTTP/1.1 abc OK\r\n\r\n",
            b"HTTP/1.1 002 OK\r\n\r\n",
            b"HTTP/1.1 600 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nA: 1\r\n",
        ] {
            assert!(parse_head(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: y\r\n")).collect();
        let err = parse_head(format!("HTTP/1.1 200 OK\r\n{many}\r\n").as_bytes()).unwrap_err();
        assert!(err.contains("more than 64"), "{err}");
        assert_eq!(parse_chunk_size("1f"), Ok(31));
        assert_eq!(parse_chunk_size("A;name=value"), Ok(10));
        assert_eq!(parse_chunk_size("0"), Ok(0));
        assert!(parse_chunk_size("").is_err());
        assert!(parse_chunk_size("xyz").is_err());
        assert!(parse_chunk_size("ffffffffffffffffff").is_err());
    }

    /// Feeds `input` to a decoder in pieces of `step` bytes (0: whole): the body, and how
    /// many bytes were used when it ended (`None`: it did not).
    fn decode(input: &[u8], step: usize) -> Result<(Vec<u8>, Option<usize>), String> {
        let mut decoder = ChunkedDecoder::new();
        let mut body = Vec::new();
        let mut at = 0;
        for piece in input.chunks(if step == 0 { input.len().max(1) } else { step }) {
            at += decoder.feed(piece, &mut body)?;
            if decoder.is_done() {
                return Ok((body, Some(at)));
            }
        }
        Ok((body, None))
    }

    #[test]
    fn chunked_bodies_decode_however_the_reads_split_them() {
        let stream = b"4\r\nWiki\r\n7;name=\"v\"\r\npedia i\r\nB\r\nn \r\nchunks.\r\n\
                       0\r\nExpires: never\r\nX-Sum: 1\r\n\r\nafter the body";
        let end = stream.len() - b"after the body".len();
        for step in 0..=stream.len() {
            let (body, used) = decode(stream, step).unwrap();
            assert_eq!(body, b"Wikipedia in \r\nchunks.", "reads of {step} bytes");
            assert_eq!(used, Some(end), "the bytes after the body are not taken");
        }
        // Bare LF line ends are read too (as the client always did).
        assert_eq!(
            decode(b"3\nabc\n0\n\n", 0).unwrap(),
            (b"abc".to_vec(), Some(9))
        );
        // Cut short: what came so far, not ended.
        assert_eq!(decode(b"5\r\nabc", 2).unwrap(), (b"abc".to_vec(), None));
        assert_eq!(decode(b"0\r\nX: 1\r\n", 0).unwrap(), (Vec::new(), None));
    }

    #[test]
    fn bad_chunked_framing_fails() {
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"4\r\nWikiXX\r\n0\r\n\r\n",
            b"ffffffffffffffffff\r\n",
        ] {
            assert!(decode(bad, 0).is_err(), "{}", String::from_utf8_lossy(bad));
            assert!(decode(bad, 1).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let long = vec![b'1'; 17 * 1024];
        assert!(decode(&long, 1000).unwrap_err().contains("too long"));
        let mut trailers = b"0\r\n".to_vec();
        for i in 0..=super::MAX_TRAILERS {
            trailers.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        assert!(decode(&trailers, 7).unwrap_err().contains("trailer"));
    }

    #[test]
    fn redirects_resolve_as_rfc_3986_says() {
        // RFC 3986 5.4.1, "http://a/b/c/d;p?q" as the base.
        let base = Url::parse("http://a/b/c/d;p?q").unwrap();
        for (location, target) in [
            ("g", "/b/c/g"),
            ("./g", "/b/c/g"),
            ("g/", "/b/c/g/"),
            ("/g", "/g"),
            ("?y", "/b/c/d;p?y"),
            ("g?y", "/b/c/g?y"),
            ("#s", "/b/c/d;p?q"),
            ("g#s", "/b/c/g"),
            ("g?y#s", "/b/c/g?y"),
            (";x", "/b/c/;x"),
            ("", "/b/c/d;p?q"),
            (".", "/b/c/"),
            ("./", "/b/c/"),
            ("..", "/b/"),
            ("../", "/b/"),
            ("../g", "/b/g"),
            ("../..", "/"),
            ("../../g", "/g"),
            ("../../../g", "/g"),
            ("/./g", "/g"),
            ("/../g", "/g"),
            ("g/./h", "/b/c/g/h"),
            ("g/../h", "/b/c/h"),
        ] {
            let next = redirect_target(&base, location, 0).unwrap();
            assert_eq!(
                (next.host.as_str(), next.target.as_str()),
                ("a", target),
                "{location:?}"
            );
        }
        let next = redirect_target(&base, "//g", 0).unwrap();
        assert_eq!(
            (next.host.as_str(), next.tls, next.target.as_str()),
            ("g", false, "/")
        );
        assert_eq!(next.to_string(), "http://g/");
    }

    #[test]
    fn redirects_keep_to_http_and_credentials_to_their_origin() {
        let secure = Url::parse("https://u:p@fw.example.com/a/b.bin").unwrap();
        for refused in [
            "http://fw.example.com/b.bin",
            "ftp://fw.example.com/b.bin",
            "file:///etc/passwd",
            "data:text/plain,x",
            "g h",
            "/a\tb",
        ] {
            assert!(redirect_target(&secure, refused, 0).is_err(), "{refused}");
        }
        let same = redirect_target(&secure, "https://fw.example.com:443/c", 0).unwrap();
        assert_eq!(
            same.basic_auth, secure.basic_auth,
            "same origin: credentials kept"
        );
        let relative = redirect_target(&secure, "c.bin", 0).unwrap();
        assert_eq!(relative.basic_auth, secure.basic_auth);
        assert_eq!(relative.to_string(), "https://fw.example.com/a/c.bin");
        for other in [
            "https://cdn.example.com/c",
            "https://fw.example.com:8443/c",
            "//cdn.example.com/c",
        ] {
            let next = redirect_target(&secure, other, 0).unwrap();
            assert_eq!(
                next.basic_auth, None,
                "{other}: another origin gets no credentials"
            );
        }
        let plain = Url::parse("http://h/x").unwrap();
        assert!(
            redirect_target(&plain, "https://h/y", 0).unwrap().tls,
            "upgrades are fine"
        );
        assert!(redirect_target(&plain, "/y", MAX_REDIRECTS - 1).is_ok());
        let err = redirect_target(&plain, "/y", MAX_REDIRECTS).unwrap_err();
        assert!(err.contains("more than 5 redirects"), "{err}");
    }

    #[test]
    fn urls() {
        let u = Url::parse("https://fw.example.com/images/a.bin?v=2#x").unwrap();
        assert_eq!(
            u,
            Url {
                tls: true,
                host: "fw.example.com".into(),
                port: 443,
                target: "/images/a.bin?v=2".into(),
                basic_auth: None,
            }
        );
        let u = Url::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!((u.port, u.target.as_str()), (8080, "/"));
        let u = Url::parse("http://[::1]:81/x").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 81));
        assert_eq!(
            u.join("/y").unwrap().target,
            "/y",
            "absolute path redirects keep the host"
        );
        assert_eq!(
            Url::parse("http://h/a/b")
                .unwrap()
                .join("c")
                .unwrap()
                .target,
            "/a/c"
        );
        assert!(Url::parse("ftp://h/x").is_err());
        let u = Url::parse("http://us%40er:p%3Aw@h/x").unwrap();
        assert_eq!(u.host, "h");
        // base64("us@er:p:w")
        assert_eq!(u.basic_auth.as_deref(), Some("dXNAZXI6cDp3"));
        assert!(Url::parse("http://u:%zz@h/x").is_err());
        assert!(Url::parse("http://:80/x").is_err());
        for bad_host in [
            "https://xx6((](nG:T:2/",
            "http://a:b:80/",
            "http://[::1]x]/",
            "http://[fe80::1%eth0]/",
            "http://h\u{7f}/",
        ] {
            assert!(Url::parse(bad_host).is_err(), "{bad_host}");
        }
        let v4 = Url::parse("http://[::ffff:10.0.0.1]:8080/").unwrap();
        assert_eq!(v4.to_string(), "http://[::ffff:10.0.0.1]:8080/");
        assert!(Url::parse("http://h:port/x").is_err());
    }
}
