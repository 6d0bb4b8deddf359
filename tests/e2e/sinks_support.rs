//! Receivers that stand in for notification services in e2e tests, on 127.0.0.1 (the operator
//! runs on the same machine): an HTTP receiver that records every request and answers as a
//! Slack/Teams/generic webhook (200) or as PagerDuty's Events API v2 (`POST /v2/enqueue` →
//! 202 `{"status":"success","dedup_key":...}`), and a plain SMTP server (AUTH PLAIN) that
//! records each message.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One request the HTTP receiver got.
#[derive(Clone, Debug)]
pub(crate) struct Received {
    /// Method, e.g. `POST`.
    pub(crate) method: String,
    /// Path and query.
    pub(crate) path: String,
    /// Header names lower-cased.
    pub(crate) headers: BTreeMap<String, String>,
    /// The body.
    pub(crate) body: String,
}

impl Received {
    /// The body as JSON.
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} got a body that is not JSON ({e}): {}",
                self.path, self.body
            )
        })
    }
}

/// An HTTP/1.1 receiver on a free port of 127.0.0.1; lives as long as the test's runtime.
pub(crate) struct Receiver {
    /// `http://127.0.0.1:PORT`.
    pub(crate) base: String,
    seen: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    /// Starts the receiver.
    pub(crate) async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let log = log.clone();
                tokio::spawn(async move {
                    let _ = serve_http(stream, log).await;
                });
            }
        });
        Self { base, seen }
    }

    /// Requests received for `path`, in order.
    pub(crate) fn requests(&self, path: &str) -> Vec<Received> {
        self.seen
            .lock()
            .expect("request log")
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// The PagerDuty events received (bodies of `POST /v2/enqueue`), in order.
    pub(crate) fn pagerduty_events(&self) -> Vec<serde_json::Value> {
        self.requests("/v2/enqueue")
            .iter()
            .map(Received::json)
            .collect()
    }
}

/// What the receiver answers: PagerDuty's answer on its path, 200 `ok` elsewhere.
fn answer(request: &Received) -> (u16, String) {
    if request.path == "/v2/enqueue" {
        let key = serde_json::from_str::<serde_json::Value>(&request.body)
            .ok()
            .and_then(|v| v.get("dedup_key")?.as_str().map(str::to_owned))
            .unwrap_or_else(|| "generated-key".into());
        let body = serde_json::json!({"status": "success", "message": "Event processed", "dedup_key": key});
        return (202, body.to_string());
    }
    (200, "ok".into())
}

async fn serve_http(stream: TcpStream, log: Arc<Mutex<Vec<Received>>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let mut lines = head.lines();
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let method = request_line.next().unwrap_or_default().to_owned();
    let path = request_line.next().unwrap_or_default().to_owned();
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).await?;
    let request = Received {
        method,
        path,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    let (code, body) = answer(&request);
    log.lock().expect("request log").push(request);
    let response = format!(
        "HTTP/1.1 {code} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        if code < 400 { "OK" } else { "Error" },
        body.len()
    );
    reader.get_mut().write_all(response.as_bytes()).await
}

/// One message the SMTP server accepted.
#[derive(Clone, Debug, Default)]
pub(crate) struct Mail {
    /// `(user, password)` from AUTH PLAIN, when the client authenticated.
    pub(crate) auth: Option<(String, String)>,
    /// The MAIL FROM address.
    pub(crate) from: String,
    /// The RCPT TO addresses.
    pub(crate) to: Vec<String>,
    /// The message (headers and body), dot-stuffing undone, CRLF line ends.
    pub(crate) data: String,
}

/// A plain SMTP server on a free port of 127.0.0.1 offering AUTH PLAIN (no TLS).
pub(crate) struct SmtpServer {
    /// The port.
    pub(crate) port: u16,
    mails: Arc<Mutex<Vec<Mail>>>,
}

impl SmtpServer {
    /// Starts the server.
    pub(crate) async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let log = mails.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let log = log.clone();
                tokio::spawn(async move {
                    let _ = serve_smtp(stream, log).await;
                });
            }
        });
        Self { port, mails }
    }

    /// The messages accepted so far.
    pub(crate) fn mails(&self) -> Vec<Mail> {
        self.mails.lock().expect("mail log").clone()
    }
}

async fn serve_smtp(stream: TcpStream, log: Arc<Mutex<Vec<Mail>>>) -> std::io::Result<()> {
    use base64::Engine;
    let mut io = BufReader::new(stream);
    io.get_mut().write_all(b"220 test-smtp ready\r\n").await?;
    let mut mail = Mail::default();
    loop {
        let mut line = String::new();
        if io.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let line = line.trim_end();
        let upper = line.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO") {
            "250-test-smtp\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n".into()
        } else if let Some(token) = line.strip_prefix("AUTH PLAIN ") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(token)
                .unwrap_or_default();
            let parts: Vec<String> = String::from_utf8_lossy(&decoded)
                .split('\0')
                .map(str::to_owned)
                .collect();
            match parts.as_slice() {
                [_, user, password] => {
                    mail.auth = Some((user.clone(), password.clone()));
                    "235 authenticated\r\n".into()
                }
                _ => "535 bad credentials\r\n".into(),
            }
        } else if upper.starts_with("MAIL FROM:") {
            mail.from = address(line);
            "250 ok\r\n".into()
        } else if upper.starts_with("RCPT TO:") {
            mail.to.push(address(line));
            "250 ok\r\n".into()
        } else if upper == "DATA" {
            io.get_mut().write_all(b"354 go ahead\r\n").await?;
            let mut data = String::new();
            loop {
                let mut l = String::new();
                if io.read_line(&mut l).await? == 0 {
                    return Ok(());
                }
                if l == ".\r\n" {
                    break;
                }
                data.push_str(l.strip_prefix('.').unwrap_or(&l));
            }
            mail.data = data;
            log.lock()
                .expect("mail log")
                .push(std::mem::take(&mut mail));
            "250 queued as 42\r\n".into()
        } else if upper == "QUIT" {
            io.get_mut().write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else {
            "502 not implemented\r\n".into()
        };
        io.get_mut().write_all(reply.as_bytes()).await?;
    }
}

/// The address inside `<...>` of a MAIL FROM or RCPT TO line.
fn address(line: &str) -> String {
    line.split_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .map(|(a, _)| a.to_owned())
        .unwrap_or_default()
}
