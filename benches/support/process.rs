//! Operator processes a bench starts, kills and restarts itself (failover, scale), where the
//! other benches measure one operator their script started. (Unused by those benches.)
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use super::{Ticker, proc_mib, progress};

/// How to start an operator process: the binary, the kubeconfig it runs with, where logs go.
#[derive(Clone)]
pub struct Launcher {
    /// The `runbook-operator` binary.
    pub bin: PathBuf,
    /// KUBECONFIG of the operator (None: the bench's own).
    pub kubeconfig: Option<PathBuf>,
    /// Directory of the operator logs (`operator-NAME.log`).
    pub log_dir: PathBuf,
}

impl Launcher {
    /// Reads BENCH_OPERATOR_BIN (required), BENCH_OPERATOR_KUBECONFIG and BENCH_OUT (logs;
    /// default: the system's temp dir).
    pub fn from_env() -> Result<Self> {
        let bin = super::env_text("BENCH_OPERATOR_BIN")
            .map(PathBuf::from)
            .context("BENCH_OPERATOR_BIN must name the runbook-operator binary")?;
        if !bin.is_file() {
            bail!("BENCH_OPERATOR_BIN: {} is not a file", bin.display());
        }
        Ok(Self {
            bin,
            kubeconfig: super::env_text("BENCH_OPERATOR_KUBECONFIG").map(PathBuf::from),
            log_dir: super::env_text("BENCH_OUT")
                .map(PathBuf::from)
                .unwrap_or_else(std::env::temp_dir),
        })
    }

    /// Starts `runbook-operator run ARGS --probe-addr 127.0.0.1:PORT` as `name` (also its
    /// POD_NAME, hence its leader identity), logging to `operator-NAME.log` (appended).
    pub fn spawn(&self, name: &str, port: u16, args: &[String]) -> Result<Operator> {
        let log = self.log_dir.join(format!("operator-{name}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("opening {}", log.display()))?;
        let mut cmd = Command::new(&self.bin);
        cmd.arg("run")
            .args(args)
            .arg("--probe-addr")
            .arg(format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .env("NO_COLOR", "1")
            .env("POD_NAME", name)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info,kube=warn".into()),
            );
        if let Some(kubeconfig) = &self.kubeconfig {
            cmd.env("KUBECONFIG", kubeconfig);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        Ok(Operator {
            pid: child.id(),
            child,
            name: name.to_owned(),
            url: format!("http://127.0.0.1:{port}"),
            log,
            started: Instant::now(),
        })
    }
}

/// An operator process this bench started; killed when dropped.
pub struct Operator {
    child: Child,
    /// Its pid.
    pub pid: u32,
    /// Its name (and leader identity).
    pub name: String,
    /// `http://127.0.0.1:PORT` of its probe server.
    pub url: String,
    /// Its log file.
    pub log: PathBuf,
    /// When it was spawned.
    pub started: Instant,
}

impl Operator {
    /// Fails when the process has exited, naming its log.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "operator {} exited ({status}); log: {}",
                self.name,
                self.log.display()
            );
        }
        Ok(())
    }

    /// The status code and body of GET `path` on its probe server (None: no answer).
    pub async fn get(&self, http: &reqwest::Client, path: &str) -> Option<(u16, String)> {
        let resp = http
            .get(format!("{}{path}", self.url))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        let code = resp.status().as_u16();
        Some((code, resp.text().await.unwrap_or_default()))
    }

    /// Waits until `/readyz` answers 200 with a body starting with `body` ("ok": leader and
    /// synced; "standby": waiting for the Lease); returns the seconds since the spawn.
    pub async fn wait_readyz(
        &mut self,
        http: &reqwest::Client,
        body: &str,
        timeout: Duration,
    ) -> Result<f64> {
        let deadline = Instant::now() + timeout;
        let mut tick = Ticker::new();
        loop {
            let answer = self.get(http, "/readyz").await;
            if let Some((200, text)) = &answer
                && text.starts_with(body)
            {
                return Ok(self.started.elapsed().as_secs_f64());
            }
            self.check_alive()?;
            if Instant::now() > deadline {
                bail!(
                    "operator {} not '{body}' on /readyz after {timeout:?} (last answer {answer:?}); log: {}",
                    self.name,
                    self.log.display()
                );
            }
            if tick.due() {
                progress(format!(
                    "  ... waiting for operator {} to answer '{body}' on /readyz (now: {answer:?})",
                    self.name
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL, as a crash: nothing is released. Reaps the process.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then SIGKILL after `grace`. Reaps the process.
    pub async fn terminate(&mut self, grace: Duration) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.kill();
    }

    /// A `/proc/PID/status` field in MiB (VmRSS, VmHWM).
    pub fn mib(&self, field: &str) -> Option<f64> {
        proc_mib(self.pid, field)
    }

    /// Its log file, for messages.
    pub fn log(&self) -> &Path {
        &self.log
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}
