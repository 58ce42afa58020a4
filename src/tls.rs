//! One rustls client configuration for every HTTP client of the process (the GitHub client and
//! each provider adapter), with the system's trust store loaded once, lazily, at the first TLS
//! handshake.
//!
//! Certificates are verified by [`rustls_platform_verifier`]: on Linux that is webpki over the
//! system roots read by `rustls-native-certs` (`/etc/ssl/certs`, or `SSL_CERT_FILE` /
//! `SSL_CERT_DIR`), so a corporate CA installed on a self-hosted runner is trusted; on macOS and
//! Windows it is the OS verifier. Before this module the process read the system roots twice at
//! start-up, once for reqwest's platform verifier and once for octocrab's `rustls-native-certs`
//! connector (~5.6 MB of peak RSS), even for runs that never open a TLS connection (a dry run, a
//! loopback fake, `http://` Ollama).
//!
//! Source: rustls `ServerCertVerifier` (<https://docs.rs/rustls/0.23/rustls/client/danger/trait.ServerCertVerifier.html>),
//! rustls-platform-verifier (<https://docs.rs/rustls-platform-verifier/0.7>).

use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

/// The process-wide client configuration: ring crypto, TLS 1.2 and 1.3, ALPN `h2` then
/// `http/1.1`, certificates checked by the platform verifier built at the first handshake.
///
/// A clone per client (rustls keeps the verifier and session cache behind `Arc`s, so every
/// clone shares the one root store). Errors: none here; a trust store that cannot be read
/// fails the first handshake with the verifier's message (e.g. "No CA certificates were
/// loaded from the system").
pub(crate) fn client_config() -> ClientConfig {
    static CONFIG: OnceLock<ClientConfig> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let verifier = shared_verifier().clone();
            let mut config = ClientConfig::builder_with_provider(verifier.provider.clone())
                .with_safe_default_protocol_versions()
                .unwrap_or_else(|_| unreachable!("ring supports the default protocol versions"))
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth();
            // reqwest sets ALPN itself only on configs it builds; a preconfigured one keeps
            // whatever it is given, and without ALPN no server would speak HTTP/2.
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            config
        })
        .clone()
}

/// The one verifier of the process (one root store, however many clients).
fn shared_verifier() -> &'static Arc<LazyPlatformVerifier> {
    static VERIFIER: OnceLock<Arc<LazyPlatformVerifier>> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        Arc::new(LazyPlatformVerifier {
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            inner: OnceLock::new(),
        })
    })
}

/// The platform verifier, built on first use. Signature checks and the advertised schemes need
/// only the crypto provider, so a ClientHello never triggers loading the roots; the first
/// certificate to verify does.
#[derive(Debug)]
struct LazyPlatformVerifier {
    provider: Arc<CryptoProvider>,
    inner: OnceLock<Result<rustls_platform_verifier::Verifier, rustls::Error>>,
}

impl LazyPlatformVerifier {
    fn verifier(&self) -> Result<&rustls_platform_verifier::Verifier, rustls::Error> {
        self.inner
            .get_or_init(|| rustls_platform_verifier::Verifier::new(self.provider.clone()))
            .as_ref()
            .map_err(Clone::clone)
    }
}

impl ServerCertVerifier for LazyPlatformVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.verifier()?.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn building_the_config_does_not_load_the_roots() {
        // No unit test of this crate opens a TLS connection, so the shared verifier is still
        // unbuilt after clients are made from the config.
        let config = client_config();
        assert_eq!(config.alpn_protocols, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
        let _client = reqwest::Client::builder()
            .tls_backend_preconfigured(client_config())
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!shared_verifier().supported_verify_schemes().is_empty());
        assert!(shared_verifier().inner.get().is_none(), "building clients must not read the system roots");
    }

    #[test]
    fn a_certificate_is_checked_against_the_system_roots() {
        // A self-signed leaf is not under any system root: the platform verifier is built on
        // this first call and refuses it (a verifier that accepted anything would pass here).
        let verifier = LazyPlatformVerifier {
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            inner: OnceLock::new(),
        };
        let bogus = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]);
        let name = ServerName::try_from("api.github.com").unwrap_or_else(|_| unreachable!());
        let result = verifier.verify_server_cert(&bogus, &[], &name, &[], UnixTime::now());
        assert!(result.is_err(), "{result:?}");
        assert!(verifier.inner.get().is_some(), "the platform verifier is built on first use");
    }
}
