//! The server under test: a separate `sfu` process (so its CPU is its own),
//! or one already running. Its numbers come from its Prometheus `/metrics`.

use anyhow::{anyhow, bail, Context, Result};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct ServerUnderTest {
    pub http: SocketAddr,
    pub metrics: SocketAddr,
    /// The shards' UDP ports (spawned servers only).
    pub media_ports: Vec<u16>,
    child: Option<Child>,
    _config: Option<tempfile_path::TempPath>,
}

mod tempfile_path {
    /// A file removed when dropped.
    pub struct TempPath(pub std::path::PathBuf);
    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

impl ServerUnderTest {
    /// Start `sfu` (next to this binary unless `bin` says otherwise) on free
    /// ports, with `shards` shard threads: on 127.0.0.1, or with its websocket
    /// (plain HTTP) and media on `ip` (metrics stay on 127.0.0.1).
    pub fn spawn(
        bin: Option<PathBuf>,
        shards: usize,
        ip: Option<std::net::IpAddr>,
    ) -> Result<Self> {
        let bin = match bin {
            Some(b) => b,
            None => std::env::current_exe()?
                .parent()
                .ok_or_else(|| anyhow!("no directory for this binary"))?
                .join("sfu"),
        };
        if !bin.exists() {
            bail!(
                "{} not found: build it first (cargo build --release -p sfu) or pass --sfu-bin",
                bin.display()
            );
        }
        let config = std::env::temp_dir().join(format!("loadtest-sfu-{}.toml", std::process::id()));
        let ip_s = ip.map_or("127.0.0.1".to_owned(), |ip| ip.to_string());
        std::fs::write(
            &config,
            format!(
                "log_level = \"warn\"\n[http]\nlisten = \"{ip_s}:0\"\ntls = \"off\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n\
                 [media]\nudp_port = 0\nshards = {shards}\nudp_bind = \"{ip_s}\"\nadvertised_ip = \"{ip_s}\"\n\
                 [signaling]\nmax_participants_per_room = 1000\n\
                 [auth]\nallow_tokenless = true\n[limits]\nmax_connections_per_ip = 1000\nmessages_per_sec = 1000\nmessage_burst = 5000\n"
            ),
        )?;
        let config = tempfile_path::TempPath(config);
        let mut child = Command::new(&bin)
            .arg("--config")
            .arg(&config.0)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stdout = child.stdout.take().expect("piped");
        let mut lines = BufReader::new(stdout).lines();
        let deadline = Instant::now() + Duration::from_secs(20);
        // "sfu listening: http A · media udp B · metrics http://C/metrics"
        let (http, metrics, media_ports) = loop {
            if Instant::now() > deadline {
                bail!("sfu did not report its addresses in 20 s");
            }
            let line = lines
                .next()
                .ok_or_else(|| anyhow!("sfu exited before listening"))??;
            if let Some(rest) = line.strip_prefix("sfu listening: http ") {
                let http = rest.split_whitespace().next().unwrap_or("").parse()?;
                let metrics = rest
                    .split("metrics http://")
                    .nth(1)
                    .and_then(|m| m.strip_suffix("/metrics"))
                    .ok_or_else(|| anyhow!("no metrics address in '{line}'"))?
                    .parse()?;
                let media = rest
                    .split("media udp ")
                    .nth(1)
                    .and_then(|m| m.split(" · ").next())
                    .unwrap_or("");
                let ports = media
                    .split(", ")
                    .filter_map(|a| a.parse::<SocketAddr>().ok())
                    .map(|a| a.port())
                    .collect();
                break (http, metrics, ports);
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines.by_ref() {});
        Ok(Self {
            http,
            metrics,
            media_ports,
            child: Some(child),
            _config: Some(config),
        })
    }

    /// A server someone else runs.
    pub fn external(http: SocketAddr, metrics: SocketAddr) -> Self {
        Self {
            http,
            metrics,
            media_ports: Vec::new(),
            child: None,
            _config: None,
        }
    }

    /// Datagrams the kernel dropped on the server's media sockets because
    /// their receive buffers were full (the `drops` column of /proc/net/udp).
    pub fn socket_drops(&self) -> u64 {
        let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
        table
            .lines()
            .skip(1)
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let port = u16::from_str_radix(f.get(1)?.rsplit(':').next()?, 16).ok()?;
                self.media_ports
                    .contains(&port)
                    .then(|| f.last()?.parse::<u64>().ok())
                    .flatten()
            })
            .sum()
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.http)
    }

    pub async fn scrape(&self) -> Result<Scrape> {
        scrape(self.metrics).await
    }

    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics
    }
}

/// One `/metrics` scrape of the server at `metrics`.
pub async fn scrape(metrics: SocketAddr) -> Result<Scrape> {
    let mut s = tokio::net::TcpStream::connect(metrics).await?;
    s.write_all(
        format!(
            "GET /metrics HTTP/1.0\r\nHost: {}\r\nConnection: close\r\n\r\n",
            metrics
        )
        .as_bytes(),
    )
    .await?;
    let mut body = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut body)).await??;
    let (head, text) = body
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("malformed metrics response"))?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        bail!("metrics: {}", head.lines().next().unwrap_or(""));
    }
    Ok(Scrape::parse(text))
}

impl Drop for ServerUnderTest {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One scrape: each metric name → the sum over its label sets.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    sums: HashMap<String, f64>,
    /// (metric name, `label="value"` pairs as written, value) per series.
    series: Vec<(String, String, f64)>,
}

impl Scrape {
    pub fn parse(text: &str) -> Self {
        let mut sums = HashMap::new();
        let mut all = Vec::new();
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (series, value) = match line.rsplit_once(' ') {
                Some(x) => x,
                None => continue,
            };
            let (name, labels) = match series.split_once('{') {
                Some((n, l)) => (n, l.trim_end_matches('}')),
                None => (series, ""),
            };
            if let Ok(v) = value.parse::<f64>() {
                *sums.entry(name.to_owned()).or_insert(0.0) += v;
                all.push((name.to_owned(), labels.to_owned(), v));
            }
        }
        Self { sums, series: all }
    }

    /// One metric by the value of one label (series without it are left out).
    pub fn by_label(&self, name: &str, label: &str) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for (n, labels, v) in &self.series {
            if n != name {
                continue;
            }
            let value = labels.split(',').find_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                (k.trim() == label).then(|| v.trim().trim_matches('"').to_owned())
            });
            if let Some(value) = value {
                *out.entry(value).or_insert(0.0) += v;
            }
        }
        out
    }

    pub fn get(&self, name: &str) -> f64 {
        self.sums.get(name).copied().unwrap_or(0.0)
    }

    /// `later - self` for one metric.
    pub fn delta(&self, later: &Scrape, name: &str) -> f64 {
        later.get(name) - self.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_label_sets() {
        let s = Scrape::parse(
            "# HELP x y\n# TYPE sfu_forwarded_packets_total counter\n\
             sfu_forwarded_packets_total{shard=\"0\"} 10\nsfu_forwarded_packets_total{shard=\"1\"} 5\n\
             process_cpu_seconds_total 1.5\n",
        );
        assert_eq!(s.get("sfu_forwarded_packets_total"), 15.0);
        assert_eq!(s.get("process_cpu_seconds_total"), 1.5);
        assert_eq!(s.get("missing"), 0.0);
        let by_shard = s.by_label("sfu_forwarded_packets_total", "shard");
        assert_eq!(by_shard.get("0"), Some(&10.0));
        assert_eq!(by_shard.get("1"), Some(&5.0));
    }
}
