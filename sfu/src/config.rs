//! Configuration, in layers where later keys win: the embedded default
//! (`config/default.toml`), an optional file, `SFU__SECTION__KEY` environment
//! variables, then `--set section.key=value` flags. Unknown keys are errors,
//! and every problem is reported at once.

use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

pub const EMBEDDED_DEFAULT: &str = include_str!("../../config/default.toml");

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Config {
    pub log_level: String,
    pub log_format: LogFormat,
    pub http: HttpConfig,
    pub metrics: MetricsConfig,
    pub shutdown: ShutdownConfig,
    pub media: MediaConfig,
    pub signaling: SignalingConfig,
    pub auth: AuthConfig,
    pub limits: LimitsConfig,
    pub simulcast: signaling::protocol::SimulcastSettings,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct AuthConfig {
    pub key_file: Option<std::path::PathBuf>,
    pub allow_tokenless: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct LimitsConfig {
    pub messages_per_sec: u32,
    pub message_burst: u32,
    pub max_name_chars: usize,
    pub max_rooms: usize,
    pub max_tracks_per_participant: usize,
    pub max_sdp_bytes: usize,
    pub max_connections_per_ip: usize,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// `auto`: TLS unless `listen` is a loopback address; `on`; `off` (plain HTTP).
    pub tls: TlsMode,
    /// PEM files; without them a self-signed certificate is kept in `data_dir`.
    pub cert_file: Option<std::path::PathBuf>,
    pub key_file: Option<std::path::PathBuf>,
    /// Extra host names for the self-signed certificate.
    #[serde(default)]
    pub tls_names: Vec<String>,
    pub data_dir: std::path::PathBuf,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    Auto,
    On,
    Off,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ShutdownConfig {
    /// After SIGTERM/SIGINT, how long to wait for clients to disconnect.
    pub drain_secs: u64,
    /// What clients are told to wait before reconnecting.
    pub retry_after_ms: u64,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct MetricsConfig {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct MediaConfig {
    pub udp_bind: IpAddr,
    pub udp_port: u16,
    pub advertised_ip: IpAddr,
    pub shards: usize,
    /// A participant whose ICE and DTLS have not completed by then is removed.
    pub connect_timeout_secs: u64,
    /// Below this downlink estimate a subscriber keeps audio and one video.
    pub starved_below_kbps: u64,
    /// Microphones forwarded at once in a room: the loudest.
    pub loudest_audio: usize,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct SignalingConfig {
    pub ping_interval_secs: u64,
    pub dead_after_secs: u64,
    pub max_message_bytes: usize,
    pub max_participants_per_room: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
}

impl Config {
    pub fn embedded() -> Self {
        Self::from_layers(&[("embedded default", EMBEDDED_DEFAULT)])
            .expect("the embedded default config is valid")
    }

    /// The embedded default, overridden by `path` if given.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_layered(path, &[], &[])
    }

    /// Every layer: default, `path`, environment (`SFU__…` variables, as
    /// (name, value) pairs) and `--set key=value` flags.
    pub fn load_layered(
        path: Option<&Path>,
        env: &[(String, String)],
        sets: &[String],
    ) -> Result<Self, ConfigError> {
        let file = match path {
            Some(path) => Some((
                path.display().to_string(),
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })?,
            )),
            None => None,
        };
        // One layer per variable or flag: a TOML document cannot repeat a table header.
        let mut extra = env_layers(env).map_err(|message| ConfigError::Invalid {
            origin: "environment".into(),
            message,
        })?;
        extra.extend(flag_layers(sets).map_err(|message| ConfigError::Invalid {
            origin: "--set".into(),
            message,
        })?);
        let mut layers: Vec<(&str, &str)> = vec![("embedded default", EMBEDDED_DEFAULT)];
        if let Some((name, text)) = &file {
            layers.push((name, text));
        }
        layers.extend(extra.iter().map(|(n, t)| (n.as_str(), t.as_str())));
        Self::from_layers(&layers)
    }

    /// Merge TOML documents in order (later keys win), then check the result.
    pub fn from_layers(layers: &[(&str, &str)]) -> Result<Self, ConfigError> {
        let mut merged = toml::Table::new();
        let mut origin = String::new();
        for (name, text) in layers {
            let table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Invalid {
                origin: name.to_string(),
                message: e.to_string(),
            })?;
            merge(&mut merged, table);
            origin = name.to_string();
        }
        let mut unknown = Vec::new();
        let config: Config = serde_ignored::deserialize(toml::Value::Table(merged), |path| {
            unknown.push(format!("unknown key '{path}'"))
        })
        .map_err(|e: toml::de::Error| ConfigError::Invalid {
            origin: origin.clone(),
            message: e.to_string(),
        })?;
        let mut problems = unknown;
        if let Err(p) = config.validate() {
            problems.push(p);
        }
        if !problems.is_empty() {
            return Err(ConfigError::Invalid {
                origin,
                message: problems.join("; "),
            });
        }
        Ok(config)
    }

    /// Every problem at once, one per line.
    fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        if self.media.shards == 0 || self.media.shards > 64 {
            problems.push("media.shards must be 1-64".to_string());
        }
        if self.media.advertised_ip.is_unspecified() {
            problems.push(
                "media.advertised_ip must be a concrete address browsers can reach".to_string(),
            );
        }
        if self.signaling.ping_interval_secs == 0
            || self.signaling.dead_after_secs <= self.signaling.ping_interval_secs
        {
            problems.push(
                "signaling.dead_after_secs must be greater than ping_interval_secs > 0".to_string(),
            );
        }
        if self.signaling.max_message_bytes < 4096 {
            problems.push("signaling.max_message_bytes must be at least 4096".to_string());
        }
        if self.http.cert_file.is_some() != self.http.key_file.is_some() {
            problems.push("http.cert_file and http.key_file go together".to_string());
        }
        if !(1..=1000).contains(&self.media.loudest_audio) {
            problems.push(
                "media.loudest_audio must be 1-1000 (as many as participants: no selection)"
                    .to_string(),
            );
        }
        if !(1..=300).contains(&self.media.connect_timeout_secs) {
            problems.push("media.connect_timeout_secs must be 1-300".to_string());
        }
        let l = &self.limits;
        if l.messages_per_sec == 0 || l.message_burst < l.messages_per_sec {
            problems.push(
                "limits.message_burst must be at least limits.messages_per_sec > 0".to_string(),
            );
        }
        if !(1..=256).contains(&l.max_name_chars) {
            problems.push("limits.max_name_chars must be 1-256".to_string());
        }
        if l.max_rooms == 0 || l.max_tracks_per_participant == 0 || l.max_connections_per_ip == 0 {
            problems.push("limits.max_rooms, max_tracks_per_participant and max_connections_per_ip must be at least 1".to_string());
        }
        if l.max_sdp_bytes < 1024 || l.max_sdp_bytes > self.signaling.max_message_bytes {
            problems.push(
                "limits.max_sdp_bytes must be 1024 .. signaling.max_message_bytes".to_string(),
            );
        }
        if self.shutdown.drain_secs > 300 {
            problems.push("shutdown.drain_secs must be at most 300".to_string());
        }
        let layers = &self.simulcast.layers;
        let mut qualities: Vec<_> = layers.iter().map(|l| l.quality).collect();
        qualities.dedup();
        if layers.len() > 3
            || qualities.len() != layers.len()
            || !qualities.windows(2).all(|w| w[0] < w[1])
            || layers.iter().any(|l| {
                l.rid.is_empty()
                    || l.rid.len() > 16
                    || !l.rid.chars().all(|c| c.is_ascii_alphanumeric())
                    || l.scale_down == 0
                    || l.max_kbps == 0
            })
        {
            problems.push("simulcast.layers: at most one each of low, mid, high, lowest first, with alphanumeric rids (1-16 chars), scale_down and max_kbps of at least 1".to_string());
        }
        if self.signaling.max_participants_per_room == 0 {
            problems.push("signaling.max_participants_per_room must be at least 1".to_string());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

/// One TOML assignment `section.key = value`; a value that is not valid TOML
/// (an address, a bare word) is taken as a string.
fn assignment(key: &str, value: &str) -> Result<String, String> {
    let key = key.trim();
    if key.is_empty()
        || !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
    {
        return Err(format!("'{key}' is not a config key"));
    }
    let literal = if toml::from_str::<toml::Table>(&format!("v = {value}")).is_ok() {
        value.to_string()
    } else {
        toml::Value::String(value.to_string()).to_string()
    };
    let (section, name) = match key.rsplit_once('.') {
        Some((s, n)) => (format!("[{s}]\n"), n),
        None => (String::new(), key),
    };
    Ok(format!("{section}{name} = {literal}\n"))
}

/// `SFU__MEDIA__ADVERTISED_IP=1.2.3.4` → `[media] advertised_ip = "1.2.3.4"`,
/// as (origin, TOML) layers.
fn env_layers(vars: &[(String, String)]) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (name, value) in vars {
        let Some(rest) = name.strip_prefix("SFU__") else {
            continue;
        };
        let key = rest.to_ascii_lowercase().replace("__", ".");
        let text = assignment(&key, value).map_err(|e| format!("{name}: {e}"))?;
        out.push((format!("environment {name}"), text));
    }
    Ok(out)
}

/// `--set media.shards=2` flags, in order.
fn flag_layers(sets: &[String]) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for set in sets {
        let (key, value) = set
            .split_once('=')
            .ok_or_else(|| format!("'{set}' is not key=value"))?;
        out.push((format!("--set {key}"), assignment(key, value)?));
    }
    Ok(out)
}

fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_parses() {
        let c = Config::embedded();
        assert_eq!(c.http.listen.port(), 8080);
        assert_eq!(c.media.advertised_ip.to_string(), "127.0.0.1");
    }

    #[test]
    fn every_file_in_config_dir_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                Config::load(Some(&path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                n += 1;
            }
        }
        assert!(n >= 2);
    }

    #[test]
    fn unknown_key_is_an_error_naming_it() {
        let err = Config::from_layers(&[
            ("d", EMBEDDED_DEFAULT),
            ("f.toml", "[media]\nudp_prot = 1\n"),
        ])
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("udp_prot"), "{msg}");
        assert!(msg.starts_with("f.toml"), "{msg}");
    }

    #[test]
    fn override_changes_only_that_key() {
        let c = Config::from_layers(&[
            ("d", EMBEDDED_DEFAULT),
            ("f", "[http]\nlisten = \"0.0.0.0:9000\"\n"),
        ])
        .unwrap();
        assert_eq!(c.http.listen.port(), 9000);
        assert_eq!(c.media, Config::embedded().media);
    }

    #[test]
    fn environment_and_flags_override_the_file_in_that_order() {
        let env = vec![
            (
                "SFU__MEDIA__ADVERTISED_IP".to_string(),
                "10.0.0.5".to_string(),
            ),
            ("SFU__MEDIA__SHARDS".to_string(), "3".to_string()),
            ("OTHER".to_string(), "ignored".to_string()),
        ];
        let sets = vec!["media.shards=2".to_string(), "log_level=debug".to_string()];
        let c = Config::load_layered(None, &env, &sets).unwrap();
        assert_eq!(c.media.advertised_ip.to_string(), "10.0.0.5");
        assert_eq!(c.media.shards, 2, "a flag beats the environment");
        assert_eq!(c.log_level, "debug");
        let err = Config::load_layered(None, &[], &["nonsense".into()]).unwrap_err();
        assert!(err.to_string().contains("key=value"), "{err}");
    }

    #[test]
    fn every_unknown_key_and_problem_is_reported_at_once() {
        let err = Config::from_layers(&[
            ("d", EMBEDDED_DEFAULT),
            (
                "f",
                "colour = 1\n[media]\nudp_prot = 1\nshards = 0\n[http]\nlisten_on = 2\n",
            ),
        ])
        .unwrap_err()
        .to_string();
        for needle in ["colour", "media.udp_prot", "http.listen_on", "shards"] {
            assert!(err.contains(needle), "{needle} missing from: {err}");
        }
    }

    #[test]
    fn validation_reports_every_problem() {
        let err = Config::from_layers(&[
            ("d", EMBEDDED_DEFAULT),
            ("f", "[media]\nshards = 0\nadvertised_ip = \"0.0.0.0\"\n"),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("shards") && err.contains("advertised_ip"),
            "{err}"
        );
    }
}
