//! Configuration: the embedded default (`config/default.toml`), overridden key
//! by key by an optional file. Unknown keys are an error that names the key.

use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

pub const EMBEDDED_DEFAULT: &str = include_str!("../../config/default.toml");

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub log_level: String,
    pub http: HttpConfig,
    pub media: MediaConfig,
    pub signaling: SignalingConfig,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MediaConfig {
    pub udp_bind: IpAddr,
    pub udp_port: u16,
    pub advertised_ip: IpAddr,
    pub shards: usize,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
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
        let Some(path) = path else {
            return Ok(Self::embedded());
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_layers(&[
            ("embedded default", EMBEDDED_DEFAULT),
            (&path.display().to_string(), &text),
        ])
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
        let config: Config =
            toml::Value::Table(merged)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Invalid {
                    origin: origin.clone(),
                    message: e.to_string(),
                })?;
        config
            .validate()
            .map_err(|message| ConfigError::Invalid { origin, message })?;
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
