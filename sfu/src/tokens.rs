//! Where the server's token key comes from, and invite links.
//! The key itself is never printed or logged.

use crate::config::AuthConfig;
use signaling::auth::Auth;
use std::path::Path;
use std::time::Duration;

/// How the key was obtained, for the start-up message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    File,
    CreatedFile,
    Environment,
    /// `token.key` in `http.data_dir`, made there on first start (the
    /// embedded default's case): links keep working across restarts.
    DataDir,
    /// Random for this process only (the data directory could not be
    /// written): tokens stop working at restart.
    Ephemeral,
}

fn random_hex_key() -> String {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system random source works");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The file in `http.data_dir` that keeps the key when nothing else names one.
pub const DATA_DIR_KEY: &str = "token.key";

/// The key: `auth.key_file` (created with a random key if missing), else
/// `SFU_TOKEN_KEY`, else `token.key` in `data_dir` (created, with the
/// directory, on first start), else, when that cannot be written, a random
/// key for this process.
pub fn load_key(
    config: &AuthConfig,
    env_key: Option<String>,
    data_dir: &Path,
) -> anyhow::Result<(Vec<u8>, KeySource)> {
    if let Some(path) = &config.key_file {
        if path.exists() {
            let text = std::fs::read(path).map_err(|e| {
                anyhow::anyhow!("cannot read auth.key_file {}: {e}", path.display())
            })?;
            let key = text.trim_ascii().to_vec();
            return Ok((key, KeySource::File));
        }
        write_private(path, &random_hex_key())?;
        let key = std::fs::read(path)?.trim_ascii().to_vec();
        return Ok((key, KeySource::CreatedFile));
    }
    if let Some(k) = env_key.filter(|k| !k.is_empty()) {
        return Ok((k.into_bytes(), KeySource::Environment));
    }
    let path = data_dir.join(DATA_DIR_KEY);
    if !path.exists() {
        // Another process (`sfu token`, a second server) may create it at the
        // same moment: whoever loses reads the winner's key below.
        if let Err(e) = write_private(&path, &random_hex_key()) {
            if !path.exists() {
                eprintln!("sfu: cannot keep the token key in {}: {e:#}; using a key for this process only", data_dir.display());
                return Ok((random_hex_key().into_bytes(), KeySource::Ephemeral));
            }
        }
    }
    let key = std::fs::read(&path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?
        .trim_ascii()
        .to_vec();
    Ok((key, KeySource::DataDir))
}

/// Create a new file only the owner can read (its directory too, if needed).
/// Fails if the file exists, so a secret is never silently replaced.
pub fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

pub fn build_auth(
    config: &AuthConfig,
    env_key: Option<String>,
    data_dir: &Path,
) -> anyhow::Result<(Auth, KeySource)> {
    let (key, source) = load_key(config, env_key, data_dir)?;
    let auth = Auth::new(key, config.allow_tokenless).map_err(|e| anyhow::anyhow!(e))?;
    Ok((auth, source))
}

/// `BASE?room=R&token=T` (plus `&lang=en` if asked): what users open.
pub fn invite_link(base: &str, room: &str, token: &str) -> String {
    format!("{base}?room={}&token={token}", encode(room))
}

/// Percent-encoding for a query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The longest a token may live: long-lived links are hard to take back.
pub const MAX_TTL: Duration = Duration::from_secs(30 * 86_400);

/// `--ttl` values: `90s`, `30m`, `8h`, `7d`, or plain seconds; 1 s to 30 days.
pub fn parse_ttl(s: &str) -> Option<Duration> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().ok()?;
    let per = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    let secs = n.checked_mul(per)?;
    (secs > 0 && secs <= MAX_TTL.as_secs()).then(|| Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_units() {
        assert_eq!(parse_ttl("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_ttl("30m"), Some(Duration::from_secs(1800)));
        assert_eq!(parse_ttl("8h"), Some(Duration::from_secs(28_800)));
        assert_eq!(parse_ttl("2d"), Some(Duration::from_secs(172_800)));
        assert_eq!(parse_ttl("0"), None);
        assert_eq!(parse_ttl("5y"), None);
        assert_eq!(parse_ttl("31d"), None, "longer than the maximum");
        assert_eq!(
            parse_ttl("213503982334601d"),
            None,
            "overflow is refused, not wrapped"
        );
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = std::env::temp_dir().join(format!("sfu-key-{}", std::process::id()));
        let path = dir.join("token.key");
        let cfg = AuthConfig {
            key_file: Some(path.clone()),
            allow_tokenless: false,
        };
        let unused = dir.join("unused");
        let (k1, s1) = load_key(&cfg, None, &unused).unwrap();
        let (k2, s2) = load_key(&cfg, None, &unused).unwrap();
        assert_eq!((s1, s2), (KeySource::CreatedFile, KeySource::File));
        assert_eq!(k1, k2);
        assert_eq!(k1.len(), 64);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(
            !unused.exists(),
            "a key file leaves the data directory alone"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn without_key_file_or_environment_the_key_is_kept_in_the_data_dir() {
        let dir = std::env::temp_dir().join(format!("sfu-data-key-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cfg = AuthConfig {
            key_file: None,
            allow_tokenless: false,
        };
        // First start: the directory and the key are made; a restart (or
        // `sfu token`) reads the same key.
        let (k1, s1) = load_key(&cfg, None, &dir).unwrap();
        let (k2, s2) = load_key(&cfg, None, &dir).unwrap();
        assert_eq!((s1, s2), (KeySource::DataDir, KeySource::DataDir));
        assert_eq!(k1, k2);
        assert_eq!(k1.len(), 64);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join(DATA_DIR_KEY))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        // The environment still wins over the data directory.
        let (k3, s3) = load_key(&cfg, Some("e".repeat(40)), &dir).unwrap();
        assert_eq!(
            (k3, s3),
            ("e".repeat(40).into_bytes(), KeySource::Environment)
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn invite_links_encode_the_room() {
        assert_eq!(
            invite_link("https://h/", "giao-ban Sở", "t"),
            "https://h/?room=giao-ban%20S%E1%BB%9F&token=t"
        );
    }
}
