//! The DTLS certificate, made once at start-up with rcgen and set on every
//! peer connection, so all peers see one fingerprint and no peer pays for key
//! generation when it joins.

use str0m::config::DtlsCert;

pub fn generate_dtls_cert() -> anyhow::Result<DtlsCert> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let params = rcgen::CertificateParams::new(vec!["sfu".to_string()])?;
    let cert = params.self_signed(&key)?;
    Ok(DtlsCert {
        certificate: cert.der().to_vec(),
        private_key: key.serialize_der(),
    })
}
