//! A small FTP client (RFC 959, passive mode with EPSV/PASV, binary type) for firmware
//! downloads resumed with REST (RFC 3659) and for log uploads, as UpdateFirmware and GetLog
//! may name an `ftp://` location. Plain FTP only: the password crosses the network in clear,
//! as the scheme implies; HTTPS is the secure choice (L01.FR.08).

use super::http::{Fetch, Pace, PartFile, UploadError};
use crate::ocpp::firmware::redacted;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A parsed `ftp://[user[:password]@]host[:port]/path` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FtpUrl {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    /// The path relative to the login directory (RFC 1738: without the first '/').
    pub path: String,
}

impl FtpUrl {
    pub fn parse(url: &str) -> Result<FtpUrl, String> {
        let rest = url
            .strip_prefix("ftp://")
            .ok_or_else(|| format!("{:?} is not an ftp:// URL", redacted(url)))?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let decode = |s: &str| {
            percent_decode(s).ok_or_else(|| format!("bad percent-encoding in {:?}", redacted(url)))
        };
        let (user, password) = match userinfo {
            Some(u) => match u.split_once(':') {
                Some((user, pw)) => (decode(user)?, decode(pw)?),
                None => (decode(u)?, String::new()),
            },
            // RFC 1738: anonymous, with an e-mail-like password.
            None => ("anonymous".to_owned(), "ocpp-agent@".to_owned()),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| "unclosed '[' in the host".to_string())?;
            match after.strip_prefix(':') {
                Some(p) => (h, p.parse().map_err(|_| format!("bad port {p:?}"))?),
                None if after.is_empty() => (h, 21),
                None => return Err(format!("bad host {hostport:?}")),
            }
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, p.parse().map_err(|_| format!("bad port {p:?}"))?),
                None => (hostport, 21),
            }
        };
        let host = host.to_owned();
        let path = decode(path.split(['?', '#']).next().unwrap_or(""))?;
        // A line break or NUL would end the command early and start another (injection).
        let unsafe_text = |t: &str| t.contains(['\r', '\n', '\0']);
        if host.is_empty() || unsafe_text(&path) || unsafe_text(&user) || unsafe_text(&password) {
            return Err(format!("{:?} is not a valid FTP URL", redacted(url)));
        }
        Ok(FtpUrl {
            host,
            port,
            user,
            password,
            path,
        })
    }
}

fn percent_decode(text: &str) -> Option<String> {
    String::from_utf8(super::http::percent_decode(text)?).ok()
}

/// A failure with the server's reply code, when there was one.
struct FtpError {
    code: Option<u16>,
    message: String,
}

impl From<String> for FtpError {
    fn from(message: String) -> Self {
        FtpError {
            code: None,
            message,
        }
    }
}

impl From<FtpError> for String {
    fn from(e: FtpError) -> String {
        e.message
    }
}

impl From<FtpError> for UploadError {
    /// As the log upload's HTTP-status mapping expects it: not logged in (530) is a refused
    /// credential (401), a refused file (550, 553) a refused permission (403), other permanent
    /// errors a bad request (400); temporary ones (4xx) and network trouble are retried.
    fn from(e: FtpError) -> UploadError {
        let status = match e.code {
            Some(530 | 532) => Some(401),
            Some(550 | 553) => Some(403),
            Some(c) if c >= 500 => Some(400),
            _ => None,
        };
        UploadError {
            status,
            message: e.message,
        }
    }
}

/// One FTP reply read line by line (RFC 959 4.2): a multi-line reply (`123-...`) ends with the
/// line that starts with the same code and a space. Public for the fuzz target `ftp_reply`.
#[derive(Debug, Default)]
pub struct Reply {
    first: Option<String>,
}

impl Reply {
    /// Takes the next line as read (with its line end); `Some` once the reply is complete:
    /// its code and last line.
    pub fn line(&mut self, raw: &[u8]) -> Option<Result<(u16, String), String>> {
        // Servers greet in whatever encoding they like; only the code matters here.
        let line = String::from_utf8_lossy(raw).trim_end().to_owned();
        let first = self.first.get_or_insert_with(|| line.clone());
        let code = first.get(..3).unwrap_or("");
        let more = first.as_bytes().get(3) == Some(&b'-');
        if more && !(line.starts_with(code) && line.as_bytes().get(3) == Some(&b' ')) {
            return None;
        }
        let code = code
            .parse::<u16>()
            .ok()
            .filter(|c| (100..=599).contains(c) && first.as_bytes()[0].is_ascii_digit());
        Some(match code {
            Some(code) => Ok((code, line)),
            None => Err(format!("FTP: not a reply: {first:?}")),
        })
    }
}

/// The port of `229 Entering Extended Passive Mode (|||port|)` (RFC 2428).
pub fn epsv_port(text: &str) -> Result<u16, String> {
    text.rsplit("|||")
        .next()
        .and_then(|r| r.split('|').next())
        .and_then(|p| p.parse::<u16>().ok())
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("FTP: unreadable EPSV reply {text:?}"))
}

/// The port of `227 Entering Passive Mode (h1,h2,h3,h4,p1,p2)` (RFC 959; the address is not
/// used: the data connection goes to the control connection's peer).
pub fn pasv_port(text: &str) -> Result<u16, String> {
    let numbers: Vec<u16> = text
        .rsplit('(')
        .next()
        .unwrap_or("")
        .trim_end_matches([')', '.'])
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    match numbers[..] {
        [_, _, _, _, hi, lo] if hi < 256 && lo < 256 && hi * 256 + lo != 0 => Ok(hi * 256 + lo),
        _ => Err(format!("FTP: unreadable PASV reply {text:?}")),
    }
}

struct Control {
    stream: BufReader<TcpStream>,
    stall: Duration,
    peer: SocketAddr,
}

async fn timed<F: std::future::Future>(stall: Duration, f: F) -> Result<F::Output, String> {
    tokio::time::timeout(stall, f)
        .await
        .map_err(|_| format!("FTP: no answer for {} s", stall.as_secs()))
}

impl Control {
    async fn connect(url: &FtpUrl, stall: Duration) -> Result<Control, FtpError> {
        let tcp = timed(stall, TcpStream::connect((url.host.as_str(), url.port)))
            .await?
            .map_err(|e| format!("connecting to {}:{}: {e}", url.host, url.port))?;
        let peer = tcp.peer_addr().map_err(|e| e.to_string())?;
        let mut control = Control {
            stream: BufReader::new(tcp),
            stall,
            peer,
        };
        control.expect(&[220], "greeting").await?;
        let (code, text) = control.command(&format!("USER {}", url.user)).await?;
        match code {
            230 => {}
            331 | 332 => {
                control
                    .run(&format!("PASS {}", url.password), &[230, 202], "PASS")
                    .await?;
            }
            _ => return Err(refused(code, "USER", &text)),
        }
        control.run("TYPE I", &[200], "TYPE I").await?;
        Ok(control)
    }

    /// Reads one reply, multi-line ones (`123-...` up to `123 ...`) included.
    async fn reply(&mut self) -> Result<(u16, String), FtpError> {
        let mut reply = Reply::default();
        loop {
            let mut raw = Vec::new();
            let n = timed(
                self.stall,
                (&mut self.stream).take(8192).read_until(b'\n', &mut raw),
            )
            .await?
            .map_err(|e| format!("FTP: {e}"))?;
            if n == 0 {
                return Err("FTP: the server closed the control connection"
                    .to_string()
                    .into());
            }
            if let Some(done) = reply.line(&raw) {
                return Ok(done?);
            }
        }
    }

    async fn command(&mut self, line: &str) -> Result<(u16, String), FtpError> {
        let io = |e: std::io::Error| format!("FTP: {e}");
        timed(
            self.stall,
            self.stream
                .get_mut()
                .write_all(format!("{line}\r\n").as_bytes()),
        )
        .await?
        .map_err(io)?;
        self.reply().await
    }

    async fn expect(&mut self, codes: &[u16], what: &str) -> Result<String, FtpError> {
        let (code, text) = self.reply().await?;
        if codes.contains(&code) {
            Ok(text)
        } else {
            Err(refused(code, what, &text))
        }
    }

    /// Sends a command and requires one of `codes`.
    async fn run(&mut self, line: &str, codes: &[u16], what: &str) -> Result<String, FtpError> {
        let (code, text) = self.command(line).await?;
        if codes.contains(&code) {
            Ok(text)
        } else {
            Err(refused(code, what, &text))
        }
    }

    /// Opens the data connection: EPSV (RFC 2428), else PASV; always to the control
    /// connection's peer address (a PASV address behind NAT is often wrong).
    async fn data(&mut self) -> Result<TcpStream, FtpError> {
        let (code, text) = self.command("EPSV").await?;
        let port = if code == 229 {
            epsv_port(&text)?
        } else {
            let text = self.run("PASV", &[227], "PASV").await?;
            pasv_port(&text)?
        };
        let address = SocketAddr::new(self.peer.ip(), port);
        Ok(timed(self.stall, TcpStream::connect(address))
            .await?
            .map_err(|e| format!("FTP data connection to {address}: {e}"))?)
    }

    async fn quit(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.command("QUIT")).await;
    }
}

fn refused(code: u16, what: &str, text: &str) -> FtpError {
    FtpError {
        code: Some(code),
        message: format!("FTP {what}: {text}"),
    }
}

/// Downloads `url` into `part`, continuing what `part` holds (REST). Returns the size.
pub async fn download(url: &str, part: &Path, fetch: &Fetch) -> Result<u64, String> {
    let url = FtpUrl::parse(url)?;
    let mut control = Control::connect(&url, fetch.stall_timeout).await?;
    let total: Option<u64> = match control.command(&format!("SIZE {}", url.path)).await? {
        (213, text) => text.split_whitespace().nth(1).and_then(|n| n.parse().ok()),
        _ => None,
    };
    // What identifies the file (RFC 3659 SIZE and MDTM): a partial file of another version
    // must not be continued.
    let modified = match control.command(&format!("MDTM {}", url.path)).await? {
        (213, text) => text.split_whitespace().nth(1).map(str::to_owned),
        _ => None,
    };
    let validator = match (total, &modified) {
        (None, None) => None,
        (size, time) => Some(format!(
            "size={} mdtm={}",
            size.map_or("?".into(), |s| s.to_string()),
            time.as_deref().unwrap_or("?")
        )),
    };
    let sidecar = super::http::validator_path(part);
    let kept = tokio::fs::read_to_string(&sidecar).await.ok();
    let mut have = tokio::fs::metadata(part)
        .await
        .map(|m| m.len())
        .unwrap_or(0);
    if validator.is_none() || kept != validator || total.is_some_and(|t| have > t) {
        have = 0; // not known to be a prefix of this file
    }
    if total.is_some_and(|t| have == t) {
        control.quit().await;
        return Ok(have);
    }
    if have == 0 {
        match &validator {
            Some(v) => tokio::fs::write(&sidecar, v)
                .await
                .map_err(|e| format!("{}: {e}", sidecar.display()))?,
            None => {
                let _ = tokio::fs::remove_file(&sidecar).await;
            }
        }
    }
    let data = control.data().await?;
    if have > 0 {
        let (code, _) = control.command(&format!("REST {have}")).await?;
        if code != 350 {
            have = 0; // the server cannot resume: start over
        }
    }
    control
        .run(&format!("RETR {}", url.path), &[125, 150], "RETR")
        .await?;
    let mut file = PartFile::open(part, have, total, fetch.max_bytes).await?;
    let mut data = data;
    let mut pace = Pace::new(fetch.stall_timeout);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = timed(fetch.stall_timeout, data.read(&mut buf))
            .await?
            .map_err(|e| format!("FTP data: {e}"))?;
        if n == 0 {
            break;
        }
        pace.moved(n)?;
        file.write(&buf[..n]).await?;
    }
    // 226: the server sent it all; anything else, the transfer was cut.
    if let Err(e) = control.expect(&[226, 250], "RETR").await {
        let _ = file.cut_short().await;
        return Err(e.into());
    }
    let size = file.finish().await?;
    control.quit().await;
    Ok(size)
}

/// Uploads `file` to `url`; a URL naming a directory (ending in '/') gets `filename` added.
pub async fn upload(
    url: &str,
    filename: &str,
    file: &Path,
    fetch: &Fetch,
) -> Result<(), UploadError> {
    let url = FtpUrl::parse(url)?;
    let target = if url.path.is_empty() || url.path.ends_with('/') {
        format!("{}{filename}", url.path)
    } else {
        url.path.clone()
    };
    let mut control = Control::connect(&url, fetch.stall_timeout).await?;
    let mut data = control.data().await?;
    control
        .run(&format!("STOR {target}"), &[125, 150], "STOR")
        .await?;
    let mut source = tokio::fs::File::open(file)
        .await
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let mut pace = Pace::new(fetch.stall_timeout);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = source
            .read(&mut buf)
            .await
            .map_err(|e| format!("{}: {e}", file.display()))?;
        if n == 0 {
            break;
        }
        pace.moved(n)?;
        timed(fetch.stall_timeout, data.write_all(&buf[..n]))
            .await?
            .map_err(|e| format!("FTP data: {e}"))?;
    }
    timed(fetch.stall_timeout, data.shutdown())
        .await?
        .map_err(|e| format!("FTP data: {e}"))?;
    drop(data);
    control.expect(&[226, 250], "STOR").await?;
    control.quit().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::FtpUrl;

    #[test]
    fn replies_and_passive_ports() {
        use super::{Reply, epsv_port, pasv_port};
        let read = |lines: &[&str]| {
            let mut reply = Reply::default();
            for (i, line) in lines.iter().enumerate() {
                if let Some(done) = reply.line(format!("{line}\r\n").as_bytes()) {
                    assert_eq!(i + 1, lines.len(), "complete at the last line");
                    return done;
                }
            }
            Err("incomplete".into())
        };
        assert_eq!(read(&["220 ready"]), Ok((220, "220 ready".into())));
        assert_eq!(
            read(&["230-Welcome", "  230 is not the end", "230 done"]),
            Ok((230, "230 done".into()))
        );
        assert_eq!(
            read(&["230-Welcome", "231 other"]),
            Err("incomplete".into())
        );
        for bad in ["hello", "99 x", "600 x", "+20 x", "2a0 x", ""] {
            assert!(read(&[bad]).is_err(), "{bad:?}");
        }
        assert_eq!(
            epsv_port("229 Entering Extended Passive Mode (|||6446|)"),
            Ok(6446)
        );
        assert!(epsv_port("229 Entering Extended Passive Mode (|||0|)").is_err());
        assert!(epsv_port("229 nothing").is_err());
        assert_eq!(
            pasv_port("227 Entering Passive Mode (10,0,0,1,25,34)."),
            Ok(25 * 256 + 34)
        );
        for bad in [
            "227 Entering Passive Mode (10,0,0,1,256,1)",
            "227 Entering Passive Mode (10,0,0,1,0,0)",
            "227 Entering Passive Mode (1,2,3)",
            "227",
        ] {
            assert!(pasv_port(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn urls() {
        let u = FtpUrl::parse("ftp://us%40er:p%3Aw@fw.example.com:2121/images/a.bin").unwrap();
        assert_eq!(
            u,
            FtpUrl {
                host: "fw.example.com".into(),
                port: 2121,
                user: "us@er".into(),
                password: "p:w".into(),
                path: "images/a.bin".into(),
            }
        );
        let u = FtpUrl::parse("ftp://h/logs/").unwrap();
        assert_eq!(
            (u.user.as_str(), u.port, u.path.as_str()),
            ("anonymous", 21, "logs/")
        );
        let u = FtpUrl::parse("ftp://[::1]:2121/x").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 2121));
        let u = FtpUrl::parse("ftp://[::1]/x").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 21));
        assert!(
            FtpUrl::parse("ftp://u:p%0d%0aDELE%20x@h/f").is_err(),
            "no injection by password"
        );
        assert!(FtpUrl::parse("http://h/x").is_err());
        assert!(FtpUrl::parse("ftp:///x").is_err());
        assert!(
            FtpUrl::parse("ftp://h/a%0d%0aDELE%20x").is_err(),
            "no command injection"
        );
    }
}
