//! A real browser for the dashboard tests: headless Chromium driven through chromedriver
//! (WebDriver, `fantoccini`), one chromedriver and one fresh profile per test, and the
//! dashboard itself (`kubectl runbook dashboard`) as a process of the built plugin.
//!
//! `hack/browser.sh install` (run by `make test`) installs Debian's `chromium` and
//! `chromium-driver`; `CHROMIUM` and `CHROMEDRIVER` (from `hack/browser.sh env`) say where
//! they are, `/usr/bin/chromium` and `/usr/bin/chromedriver` otherwise.
//!
//! Every wait polls something the page or the cluster shows until [`PATIENCE`]; nothing
//! sleeps in place of a condition.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

use crate::support::{PATIENCE, free_port};

/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(100);

/// The Chromium flags of every session: headless at the 1280×800, nothing that
/// reaches the network on its own, a fresh profile (appended).
const CHROME_ARGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,800",
];

/// Makes the page see `prefers-color-scheme: dark` (Blink's `PreferredColorScheme`: 0 is
/// dark). WebDriver has no media emulation; this setting is what Chromium offers instead.
pub const DARK: &str = "--blink-settings=preferredColorScheme=0";

fn chromium() -> String {
    std::env::var("CHROMIUM")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "/usr/bin/chromium".to_owned())
}

fn chromedriver() -> String {
    std::env::var("CHROMEDRIVER")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "/usr/bin/chromedriver".to_owned())
}

/// Where screenshots go: `<target>/dashboard-screenshots/` (CARGO_TARGET_DIR when set).
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("dashboard-screenshots")
}

/// Kills a process group this module started (the child and everything it spawned, e.g.
/// Chromium under chromedriver), by its id.
fn kill_group(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .stderr(Stdio::null())
        .status();
    let _ = child.kill();
    let _ = child.wait();
}

/// A chromedriver process (and the Chromium it starts), killed on drop with its profile
/// directory removed.
struct Driver {
    child: Child,
    url: String,
    profile: PathBuf,
    log: PathBuf,
}

impl Driver {
    fn start(test: &str) -> Self {
        let port = free_port();
        let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let tag = format!("{test}-{:06x}", rand::random::<u32>() & 0xff_ffff);
        let profile = tmp.join(format!("chrome-profile-{tag}"));
        let log = tmp.join(format!("chromedriver-{tag}.log"));
        let child = Command::new(chromedriver())
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, so drop ends Chromium too.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "start {} ({e}): run `hack/browser.sh install` (make test does)",
                    chromedriver()
                )
            });
        let mut driver = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            profile,
            log,
        };
        driver.wait_ready();
        driver
    }

    /// Polls `/status` until chromedriver says it is ready.
    fn wait_ready(&mut self) {
        let started = Instant::now();
        let addr = self.url.trim_start_matches("http://").to_owned();
        loop {
            if let Some(status) = self.child.try_wait().expect("chromedriver state") {
                panic!(
                    "chromedriver exited ({status}) before answering; log: {}",
                    self.log.display()
                );
            }
            if let Ok((200, body)) = http(&addr, "GET", "/status", &addr, &[], "")
                && serde_json::from_str::<Value>(&body)
                    .is_ok_and(|v| v["value"]["ready"] == json!(true))
            {
                return;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "chromedriver never answered ready on {}/status; log: {}",
                self.url,
                self.log.display()
            );
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        kill_group(&mut self.child);
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// A headless Chromium session of one test.
pub struct Browser {
    pub client: Client,
    test: String,
    driver: Driver,
}

impl Browser {
    /// Starts chromedriver and a Chromium session with the suite's flags.
    pub async fn start(test: &str) -> Self {
        Self::start_with(test, &[]).await
    }

    /// [`Browser::start`] with `extra` Chromium flags (e.g. [`DARK`]).
    pub async fn start_with(test: &str, extra: &[&str]) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let driver = Driver::start(test);
        let mut args: Vec<String> = CHROME_ARGS.iter().map(|s| s.to_string()).collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        args.push(format!("--user-data-dir={}", driver.profile.display()));
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".to_owned(),
            json!({"args": args, "binary": chromium()}),
        );
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&driver.url)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "open a Chromium session ({}) through chromedriver: {e}; log: {}",
                    chromium(),
                    driver.log.display()
                )
            });
        Self {
            client,
            test: test.to_owned(),
            driver,
        }
    }

    /// Navigates to `url`.
    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// The page's current URL.
    pub async fn url(&self) -> String {
        self.client
            .current_url()
            .await
            .expect("current url")
            .to_string()
    }

    /// Runs `script` (a function body: `return ...`) in the page.
    pub async fn js(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("run {script:?} in the page: {e}"))
    }

    /// Polls the JS expression `predicate` until it is truthy; on timeout saves a screenshot
    /// and fails with `what` and the page's body text.
    pub async fn wait_js(&self, what: &str, predicate: &str) {
        let script = format!("return !!({predicate});");
        let started = Instant::now();
        loop {
            if let Ok(v) = self.client.execute(&script, vec![]).await
                && v == json!(true)
            {
                return;
            }
            if started.elapsed() >= PATIENCE {
                panic!(
                    "{}",
                    self.failure(&format!("the page never showed {what} ({predicate})"))
                        .await
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until an element matches `css` and returns it.
    pub async fn wait_css(&self, css: &str) -> Element {
        let started = Instant::now();
        loop {
            if let Ok(e) = self.client.find(Locator::Css(css)).await {
                return e;
            }
            if started.elapsed() >= PATIENCE {
                panic!(
                    "{}",
                    self.failure(&format!("no element matches {css:?}")).await
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Whether an element matches `css` now.
    pub async fn exists(&self, css: &str) -> bool {
        !self
            .client
            .find_all(Locator::Css(css))
            .await
            .expect("find elements")
            .is_empty()
    }

    /// Waits for `css` and clicks it.
    pub async fn click(&self, css: &str) {
        let e = self.wait_css(css).await;
        if let Err(err) = e.click().await {
            panic!("{}", self.failure(&format!("click {css:?}: {err}")).await);
        }
    }

    /// Waits for `css` and returns its visible text.
    pub async fn text(&self, css: &str) -> String {
        let e = self.wait_css(css).await;
        e.text().await.expect("element text")
    }

    /// Waits for `css` and returns its attribute `name`.
    pub async fn attr(&self, css: &str, name: &str) -> Option<String> {
        let e = self.wait_css(css).await;
        e.attr(name).await.expect("element attribute")
    }

    /// Saves a PNG of the viewport as `<target>/dashboard-screenshots/<test>-<name>.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("create the screenshot directory");
        let path = dir.join(format!("{}-{name}.png", self.test));
        let png = self.client.screenshot().await.expect("take a screenshot");
        std::fs::write(&path, png).expect("write the screenshot");
        path
    }

    /// What a failed check saw: `why`, the page's URL and text, and a screenshot saved
    /// for it; the caller panics with it.
    pub async fn failure(&self, why: &str) -> String {
        let shot = self.screenshot("failure").await;
        let url = self.url().await;
        let body = self
            .client
            .execute(
                "return document.body ? document.body.innerText.slice(0, 3000) : ''",
                vec![],
            )
            .await
            .unwrap_or(Value::Null);
        format!(
            "{why}\nurl: {url}\nscreenshot: {}\nchromedriver log: {}\npage text:\n{}",
            shot.display(),
            self.driver.log.display(),
            body.as_str().unwrap_or_default()
        )
    }

    /// Ends the session (Chromium exits); chromedriver is killed when `self` drops.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

/// A running `kubectl runbook dashboard`, killed on drop.
pub struct Dashboard {
    child: Child,
    /// `http://127.0.0.1:<port>/` as the dashboard printed it.
    pub url: String,
    /// `127.0.0.1:<port>`.
    pub addr: String,
    /// Its stderr.
    pub log: PathBuf,
}

impl Dashboard {
    /// Starts the dashboard on a free port for namespace `namespace`, as the suite's identity
    /// or with `kubeconfig`, and waits for its `Dashboard: <url>` line.
    pub fn start(namespace: &str, kubeconfig: Option<&Path>) -> Self {
        let log = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "dashboard-{namespace}-{:06x}.log",
            rand::random::<u32>() & 0xff_ffff
        ));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kubectl-runbook"));
        cmd.args(["-n", namespace]);
        if let Some(path) = kubeconfig {
            cmd.arg("--kubeconfig").arg(path);
        }
        let mut child = cmd
            .args(["dashboard", "--port", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("dashboard log file"))
            .spawn()
            .expect("start kubectl-runbook dashboard");
        let stdout = child.stdout.take().expect("dashboard stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let started = Instant::now();
        let mut seen = Vec::new();
        let url = loop {
            match rx.recv_timeout(POLL) {
                Ok(line) => match line.strip_prefix("Dashboard: ") {
                    Some(url) => break url.trim().to_owned(),
                    None => seen.push(line),
                },
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = child.wait().expect("dashboard exit");
                    panic!(
                        "kubectl runbook dashboard exited ({status}) without printing its URL; stdout: {seen:?}; stderr:\n{}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
            }
            assert!(
                started.elapsed() < PATIENCE,
                "kubectl runbook dashboard printed no `Dashboard: <url>` line; stdout: {seen:?}; log: {}",
                log.display()
            );
        };
        let addr = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        assert!(
            addr.starts_with("127.0.0.1:"),
            "the dashboard must listen on 127.0.0.1: {url}"
        );
        Self {
            child,
            url,
            addr,
            log,
        }
    }

    /// The page's URL for fragment `#/<route>`.
    pub fn page(&self, route: &str) -> String {
        format!("{}#/{route}", self.url)
    }

    /// One HTTP/1.1 request to the dashboard with the right Host header.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, String) {
        http(&self.addr, method, path, &self.addr, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path} to the dashboard: {e}"))
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.1 request over a TcpStream to `addr` with an explicit `Host` header (the
/// test of the dashboard's Host check needs a foreign one, which HTTP clients do not send),
/// returning the status code and the body.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(PATIENCE))?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes())?;
    // Read until the answer is complete: servers may keep the connection open despite
    // `Connection: close` (chromedriver does), so EOF is not the only end.
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        if complete(&raw) {
            break;
        }
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let rest = raw.get(split + 4..).unwrap_or_default();
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {head:?}")))?;
    let body = if chunked(&head) {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Ok((code, String::from_utf8_lossy(&body).into_owned()))
}

fn chunked(head: &str) -> bool {
    head.to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
}

/// Whether `raw` holds a whole answer: its head, then Content-Length bytes or the last chunk.
fn complete(raw: &[u8]) -> bool {
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let body = &raw[split + 4..];
    if chunked(&head) {
        return body.ends_with(b"0\r\n\r\n");
    }
    head.lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|n| n.trim().parse::<usize>().ok())
        .is_some_and(|n| body.len() >= n)
}

/// The body of a chunked answer.
fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = String::from_utf8_lossy(&rest[..eol]);
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        let tail = &rest[eol + 2..];
        if n == 0 || tail.len() < n {
            break;
        }
        out.extend_from_slice(&tail[..n]);
        rest = tail[n..].strip_prefix(b"\r\n").unwrap_or(&tail[n..]);
    }
    out
}
