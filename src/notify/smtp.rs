//! A small SMTP client (RFC 5321) for email notifications: EHLO, STARTTLS or implicit TLS
//! (rustls, the operator's own TLS stack, with the platform's trust roots), AUTH PLAIN, and
//! one message through MAIL/RCPT/DATA. The connection goes only to addresses the egress fence
//! allows; every reply line is bounded.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use super::types::SmtpTls;
use crate::fence::{self, EgressPolicy};

/// Longest reply line read; a longer one is a protocol error.
const MAX_LINE: usize = 4096;
/// Most lines of one (multi-line) reply.
const MAX_LINES: usize = 64;
/// The name the client greets with.
const CLIENT_NAME: &str = "runbook-operator";

/// Where to connect.
pub struct Server<'a> {
    /// Host name or address.
    pub host: &'a str,
    /// Port.
    pub port: u16,
    /// Encryption.
    pub tls: SmtpTls,
}

/// Why sending failed. Messages never contain the credentials.
#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    /// The fence refused every way to the server.
    #[error("refused to connect: {0}")]
    Refused(#[from] fence::Refused),
    /// The connection failed.
    #[error("{0}")]
    Io(String),
    /// The server answered something else than the step of the exchange expects.
    #[error("{command} answered {answer:?}")]
    Rejected {
        /// The command, e.g. `RCPT TO`.
        command: &'static str,
        /// The server's reply.
        answer: String,
    },
    /// StartTLS was asked for and the server does not offer it.
    #[error(
        "the server does not offer STARTTLS; set tls: Implicit (port 465) if it speaks TLS from the start, or tls: None for a plain relay inside the cluster"
    )]
    NoStartTls,
    /// The server does not take AUTH PLAIN.
    #[error("the server does not offer AUTH PLAIN (it offers {0:?})")]
    NoAuthPlain(String),
    /// TLS could not be set up.
    #[error("TLS: {0}")]
    Tls(String),
}

impl SmtpError {
    /// The step failure's reason.
    pub fn reason(&self) -> &'static str {
        match self {
            SmtpError::Refused(_) => "EgressRefused",
            SmtpError::Io(_) | SmtpError::Tls(_) => "RequestFailed",
            SmtpError::Rejected { .. } => "UnexpectedStatus",
            SmtpError::NoStartTls | SmtpError::NoAuthPlain(_) => "InvalidSpec",
        }
    }
}

impl From<std::io::Error> for SmtpError {
    fn from(err: std::io::Error) -> Self {
        SmtpError::Io(err.to_string())
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

struct Conn {
    io: BufReader<Box<dyn Io>>,
}

/// One reply: its code and its text lines.
struct Answer {
    code: u16,
    lines: Vec<String>,
}

impl Answer {
    fn text(&self) -> String {
        self.lines.join(" / ")
    }
}

impl Conn {
    async fn read(&mut self) -> Result<Answer, SmtpError> {
        let mut lines = Vec::new();
        loop {
            let mut line = Vec::new();
            let read = (&mut self.io)
                .take(MAX_LINE as u64)
                .read_until(b'\n', &mut line)
                .await?;
            if read == 0 {
                return Err(SmtpError::Io("the server closed the connection".into()));
            }
            if !line.ends_with(b"\n") {
                return Err(SmtpError::Io(format!(
                    "a reply line longer than {MAX_LINE} bytes"
                )));
            }
            let line = String::from_utf8_lossy(&line).trim_end().to_owned();
            let code = line.get(..3).and_then(|c| c.parse::<u16>().ok());
            let Some(code) = code else {
                return Err(SmtpError::Io(format!(
                    "not an SMTP reply: {:?}",
                    crate::names::truncate(&line, 128)
                )));
            };
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line.get(4..).unwrap_or_default().to_owned());
            if last {
                return Ok(Answer { code, lines });
            }
            if lines.len() >= MAX_LINES {
                return Err(SmtpError::Io(format!(
                    "a reply of more than {MAX_LINES} lines"
                )));
            }
        }
    }

    async fn write(&mut self, data: &[u8]) -> Result<(), SmtpError> {
        let io = self.io.get_mut();
        io.write_all(data).await?;
        io.flush().await?;
        Ok(())
    }

    /// Sends a command (shown as `name` in errors, never with its arguments) and expects a
    /// reply whose code is in `accept`.
    async fn command(
        &mut self,
        name: &'static str,
        line: &str,
        accept: &[u16],
    ) -> Result<Answer, SmtpError> {
        self.write(format!("{line}\r\n").as_bytes()).await?;
        self.expect(name, accept).await
    }

    async fn expect(&mut self, name: &'static str, accept: &[u16]) -> Result<Answer, SmtpError> {
        let answer = self.read().await?;
        if !accept.contains(&answer.code) {
            return Err(SmtpError::Rejected {
                command: name,
                answer: format!("{} {}", answer.code, answer.text()),
            });
        }
        Ok(answer)
    }

    async fn tls(self, host: &str) -> Result<Conn, SmtpError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls_platform_verifier::Verifier::new(provider.clone())
            .map_err(|e| SmtpError::Tls(e.to_string()))?;
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| SmtpError::Tls(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(host.to_owned())
            .map_err(|e| SmtpError::Tls(format!("{host:?} is not a TLS server name: {e}")))?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let stream = connector
            .connect(name, self.io.into_inner())
            .await
            .map_err(|e| SmtpError::Tls(e.to_string()))?;
        let io: Box<dyn Io> = Box::new(stream);
        Ok(Conn {
            io: BufReader::new(io),
        })
    }
}

/// Connects to the first address of `host` that answers, after checking every address it
/// resolves to against the fence.
async fn connect(server: &Server<'_>, policy: &EgressPolicy) -> Result<Conn, SmtpError> {
    let host = server.host.trim_end_matches('.');
    let addrs: Vec<SocketAddr> = match fence::literal_ip(host) {
        Some(ip) => vec![SocketAddr::new(ip, server.port)],
        None => tokio::net::lookup_host((host, server.port))
            .await
            .map_err(|e| SmtpError::Io(format!("cannot resolve {host:?}: {e}")))?
            .collect(),
    };
    fence::first_refused(host, &addrs, policy)?;
    let mut last = SmtpError::Io(format!("{host:?} resolves to no address"));
    for addr in addrs {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(stream) => {
                let io: Box<dyn Io> = Box::new(stream);
                return Ok(Conn {
                    io: BufReader::new(io),
                });
            }
            Err(err) => last = SmtpError::Io(format!("connecting to {addr}: {err}")),
        }
    }
    Err(last)
}

/// The extensions an EHLO reply lists, upper-cased (`STARTTLS`, `AUTH PLAIN LOGIN`, ...).
fn extensions(answer: &Answer) -> Vec<String> {
    answer
        .lines
        .iter()
        .skip(1)
        .map(|l| l.trim().to_ascii_uppercase())
        .collect()
}

/// The AUTH PLAIN initial response (RFC 4616): base64 of `\0user\0password`.
pub fn auth_plain(user: &str, password: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"))
}

/// Sends one message (`data`, already dot-stuffed with CRLF line ends) and returns the
/// server's answer to it (often the queue id).
pub async fn send(
    server: &Server<'_>,
    policy: &EgressPolicy,
    auth: Option<(String, String)>,
    from: &str,
    to: &[String],
    data: &str,
) -> Result<String, SmtpError> {
    let mut conn = connect(server, policy).await?;
    if server.tls == SmtpTls::Implicit {
        conn = conn.tls(server.host).await?;
    }
    conn.expect("the greeting", &[220]).await?;
    let ehlo = format!("EHLO {CLIENT_NAME}");
    let mut offered = extensions(&conn.command("EHLO", &ehlo, &[250]).await?);
    if server.tls == SmtpTls::StartTLS {
        if !offered.iter().any(|e| e == "STARTTLS") {
            return Err(SmtpError::NoStartTls);
        }
        conn.command("STARTTLS", "STARTTLS", &[220]).await?;
        conn = conn.tls(server.host).await?;
        offered = extensions(&conn.command("EHLO", &ehlo, &[250]).await?);
    }
    if let Some((user, password)) = auth {
        let methods = offered
            .iter()
            .find_map(|e| e.strip_prefix("AUTH").map(str::trim))
            .unwrap_or_default();
        if !methods.split([' ', '=']).any(|m| m == "PLAIN") {
            return Err(SmtpError::NoAuthPlain(methods.to_owned()));
        }
        let line = format!("AUTH PLAIN {}", auth_plain(&user, &password));
        conn.command("AUTH PLAIN", &line, &[235]).await?;
    }
    conn.command("MAIL FROM", &format!("MAIL FROM:<{from}>"), &[250])
        .await?;
    for recipient in to {
        conn.command("RCPT TO", &format!("RCPT TO:<{recipient}>"), &[250, 251])
            .await?;
    }
    conn.command("DATA", "DATA", &[354]).await?;
    conn.write(data.as_bytes()).await?;
    let answer = conn.command("the message", ".", &[250]).await?;
    // The message is accepted; a failed QUIT changes nothing.
    let _ = conn.command("QUIT", "QUIT", &[221]).await;
    Ok(answer.text())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_plain_is_base64_of_nul_separated_credentials() {
        // RFC 4616's example: authcid "tim", password "tanstaaftanstaaf".
        assert_eq!(
            auth_plain("tim", "tanstaaftanstaaf"),
            "AHRpbQB0YW5zdGFhZnRhbnN0YWFm"
        );
    }

    #[test]
    fn extensions_skip_the_greeting_line() {
        let answer = Answer {
            code: 250,
            lines: vec![
                "mail.example.com".into(),
                "starttls".into(),
                "AUTH PLAIN LOGIN".into(),
            ],
        };
        assert_eq!(extensions(&answer), ["STARTTLS", "AUTH PLAIN LOGIN"]);
    }
}
