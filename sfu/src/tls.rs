//! HTTPS/WSS for the web client and signaling. Configured PEM files are used
//! as they are; otherwise a self-signed certificate is made with rcgen on
//! first start, kept in `http.data_dir`, and its fingerprint printed so users
//! can check it. Plain HTTP only when configured, or on loopback (development).

use crate::config::{HttpConfig, TlsMode};
use std::net::IpAddr;
use std::path::Path;

/// Certificate chain and private key, PEM.
pub struct TlsMaterial {
    pub cert_pem: String,
    pub key_pem: String,
    /// Where they came from, for the start-up message.
    pub origin: String,
    /// SHA-256 of the leaf certificate, `AB:CD:…`.
    pub fingerprint: String,
}

/// Whether this listener serves TLS.
pub fn enabled(http: &HttpConfig) -> bool {
    match http.tls {
        TlsMode::On => true,
        TlsMode::Off => false,
        TlsMode::Auto => !http.listen.ip().is_loopback(),
    }
}

/// The names a self-signed certificate covers: configured names, the listen
/// address when concrete, the advertised media address, and localhost.
fn names(http: &HttpConfig, advertised: IpAddr) -> Vec<String> {
    let mut names: Vec<String> = http.tls_names.clone();
    for ip in [http.listen.ip(), advertised] {
        if !ip.is_unspecified() {
            names.push(ip.to_string());
        }
    }
    names.push("localhost".into());
    names.push("127.0.0.1".into());
    names.sort();
    names.dedup();
    names
}

pub fn load_or_create(http: &HttpConfig, advertised: IpAddr) -> anyhow::Result<TlsMaterial> {
    if let (Some(cert), Some(key)) = (&http.cert_file, &http.key_file) {
        let cert_pem = read(cert)?;
        let key_pem = read(key)?;
        let fingerprint = fingerprint(&cert_pem)?;
        return Ok(TlsMaterial {
            cert_pem,
            key_pem,
            origin: format!("{} (configured)", cert.display()),
            fingerprint,
        });
    }
    let dir = &http.data_dir;
    let (cert_path, key_path) = (dir.join("tls-cert.pem"), dir.join("tls-key.pem"));
    if cert_path.exists() && key_path.exists() {
        let cert_pem = read(&cert_path)?;
        let fingerprint = fingerprint(&cert_pem)?;
        return Ok(TlsMaterial {
            key_pem: read(&key_path)?,
            cert_pem,
            origin: format!(
                "{} (self-signed, kept from an earlier start)",
                cert_path.display()
            ),
            fingerprint,
        });
    }
    let names = names(http, advertised);
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::new(names.clone())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, names[0].clone());
    let cert = params.self_signed(&key)?;
    crate::tokens::write_private(&key_path, &key.serialize_pem())?;
    std::fs::write(&cert_path, cert.pem())?;
    Ok(TlsMaterial {
        fingerprint: fingerprint(&cert.pem())?,
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        origin: format!(
            "{} (self-signed, new; covers {})",
            cert_path.display(),
            names.join(", ")
        ),
    })
}

fn read(p: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))
}

/// SHA-256 of the first certificate in a PEM chain.
pub fn fingerprint(cert_pem: &str) -> anyhow::Result<String> {
    let der = rustls_pemfile::certs(&mut cert_pem.as_bytes())
        .next()
        .ok_or_else(|| anyhow::anyhow!("no certificate in the PEM"))??;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der.as_ref());
    Ok(digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(dir: &Path) -> HttpConfig {
        HttpConfig {
            listen: "0.0.0.0:8443".parse().unwrap(),
            tls: TlsMode::Auto,
            cert_file: None,
            key_file: None,
            tls_names: vec!["sfu.example.vn".into()],
            data_dir: dir.to_path_buf(),
        }
    }

    #[test]
    fn self_signed_is_made_once_and_kept() {
        let dir = std::env::temp_dir().join(format!("sfu-tls-{}", std::process::id()));
        let h = http(&dir);
        assert!(enabled(&h), "auto on a non-loopback address means TLS");
        let first = load_or_create(&h, "10.20.0.5".parse().unwrap()).unwrap();
        assert!(first.origin.contains("sfu.example.vn") && first.origin.contains("10.20.0.5"));
        let again = load_or_create(&h, "10.20.0.5".parse().unwrap()).unwrap();
        assert_eq!(first.fingerprint, again.fingerprint);
        assert_eq!(first.fingerprint.len(), 32 * 3 - 1);
        let _ = std::fs::remove_dir_all(dir);
        let mut lo = http(Path::new("/nonexistent"));
        lo.listen = "127.0.0.1:8080".parse().unwrap();
        assert!(!enabled(&lo), "loopback stays plain HTTP for development");
    }
}
