//! GitHub App JSON Web Tokens: RS256, signed with the app's RSA private key, `iat` 60 s in the
//! past (clock drift) and `exp` 9 minutes ahead (GitHub's ceiling is 10), `iss` the client id or
//! app id.
//!
//! Source: "Generating a JSON Web Token (JWT) for a GitHub App"
//! (<https://docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app/generating-a-json-web-token-jwt-for-a-github-app>).
//! The JWT is assembled here per RFC 7519/7515 (JWS compact serialization: base64url without
//! padding of the JSON header `{"alg":"RS256","typ":"JWT"}` and of the claims, `.`-joined, then
//! the signature) and signed RSASSA-PKCS1-v1_5 with SHA-256 (RFC 7518 §3.3) by `ring`, which
//! also validates the whole key when it is loaded. The PEM (RFC 7468) is decoded here with
//! `base64`; the key is classified first so a wrong file gets a message that says what is
//! wrong with it.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};

/// Seconds `iat` is set in the past, against clock drift (GitHub's recommendation).
pub(crate) const IAT_SKEW_SECS: u64 = 60;
/// Seconds from now to `exp`; GitHub refuses more than 600.
pub(crate) const LIFETIME_SECS: u64 = 540;

/// The JOSE header of every app JWT.
const HEADER: &str = r#"{"alg":"RS256","typ":"JWT"}"#;

/// A private key that cannot sign an app JWT. `source` names where it came from (a file path
/// the keyring entry or the environment variable), never its content.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the app private key from {source_name} is not a PEM private key (no `-----BEGIN` line)\nhelp: use the `.pem` file downloaded from the app's settings page")]
    NotPem { source_name: String },
    #[error("the app private key from {source_name} is encrypted; agentctl needs an unencrypted RSA key\nhelp: decrypt it with `openssl rsa -in KEY -out KEY.plain` and keep the result private")]
    Encrypted { source_name: String },
    #[error("the app private key from {source_name} is not an RSA key ({kind}); GitHub App keys are RSA")]
    NotRsa { source_name: String, kind: String },
    #[error("the app private key from {source_name} is truncated or corrupt ({detail})\nhelp: copy the whole file, from `-----BEGIN` to `-----END`")]
    Corrupt { source_name: String, detail: String },
}

/// An RSA key ready to sign app JWTs.
pub(crate) struct AppKey {
    key: ring::signature::RsaKeyPair,
    /// Where the key came from, for messages (`file PATH`, `keyring entry SERVICE/NAME` or
    /// `environment variable NAME`).
    pub source_name: String,
}

impl std::fmt::Debug for AppKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppKey").field("source_name", &self.source_name).finish_non_exhaustive()
    }
}

impl AppKey {
    /// Parses `pem` (PKCS#1 `RSA PRIVATE KEY` or PKCS#8 `PRIVATE KEY`, RFC 7468 armour).
    ///
    /// Errors: [`KeyError::NotPem`], [`KeyError::Encrypted`], [`KeyError::NotRsa`] (EC, Ed25519,
    /// OpenSSH, DSA keys), [`KeyError::Corrupt`] (cut short, bad base64, bad DER, inconsistent
    /// key, a modulus outside 2048–4096 bits; `ring`'s limits).
    pub(crate) fn from_pem(pem: &SecretString, source_name: &str) -> Result<Self, KeyError> {
        let text = pem.expose_secret();
        let source = || source_name.to_string();
        let Some(begin) = text.find("-----BEGIN ") else {
            return Err(KeyError::NotPem { source_name: source() });
        };
        let label: String = text[begin + 11..].chars().take_while(|c| *c != '-').collect();
        if label.contains("ENCRYPTED") || text.contains("Proc-Type: 4,ENCRYPTED") {
            return Err(KeyError::Encrypted { source_name: source() });
        }
        if label != "RSA PRIVATE KEY" && label != "PRIVATE KEY" {
            return Err(KeyError::NotRsa { source_name: source(), kind: label.trim().to_string() });
        }
        let corrupt = |detail: &str| KeyError::Corrupt { source_name: source(), detail: detail.to_string() };
        // The PEM section (RFC 7468) decoded by rustls-pki-types; its error says what is wrong
        // (no END line, bad base64) without quoting the key.
        use rustls_pki_types::pem::PemObject as _;
        let section = &text.as_bytes()[begin..];
        let key = if label == "RSA PRIVATE KEY" {
            rustls_pki_types::PrivatePkcs1KeyDer::from_pem_slice(section)
                .map_err(|e| corrupt(&pem_problem(&e)))
                .map(|der| ring::signature::RsaKeyPair::from_der(der.secret_pkcs1_der()))?
        } else {
            rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(section)
                .map_err(|e| corrupt(&pem_problem(&e)))
                .map(|der| ring::signature::RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()))?
        };
        let key = key.map_err(|e| match e.to_string().as_str() {
            "WrongAlgorithm" => KeyError::NotRsa { source_name: source(), kind: "PKCS#8, not RSA".into() },
            other => corrupt(&format!("the key is rejected: {other}")),
        })?;
        Ok(AppKey { key, source_name: source_name.to_string() })
    }

    /// A JWT for app `iss` (client id, or numeric app id sent as a number) issued at `now`
    /// (Unix seconds): `iat = now - 60`, `exp = now + 540`. Errors: the signer's message.
    pub(crate) fn sign(&self, iss: &str, now: u64) -> Result<SecretString, String> {
        let iss = match iss.parse::<u64>() {
            Ok(n) => serde_json::Value::from(n),
            Err(_) => serde_json::Value::from(iss),
        };
        let claims = serde_json::json!({
            "iat": now.saturating_sub(IAT_SKEW_SECS),
            "exp": now + LIFETIME_SECS,
            "iss": iss,
        });
        sign_rs256(&self.key, HEADER, &claims)
    }
}

/// A JWS compact serialization (RFC 7515 §7.1) of `claims` under the JOSE `header` (JSON
/// text), signed RSASSA-PKCS1-v1_5 with SHA-256 (RFC 7518 §3.3, `RS256`) by `ring`. Shared by
/// GitHub App JWTs and Google service-account grants ([`crate::cloud::google`]). Errors: the
/// signer's message.
pub(crate) fn sign_rs256(
    key: &ring::signature::RsaKeyPair,
    header: &str,
    claims: &serde_json::Value,
) -> Result<SecretString, String> {
    let mut jwt = URL_SAFE_NO_PAD.encode(header);
    jwt.push('.');
    jwt.push_str(&URL_SAFE_NO_PAD.encode(claims.to_string()));
    let mut signature = vec![0u8; key.public().modulus_len()];
    key.sign(&ring::signature::RSA_PKCS1_SHA256, &ring::rand::SystemRandom::new(), jwt.as_bytes(), &mut signature)
        .map_err(|_| "RSA signing failed".to_string())?;
    jwt.push('.');
    jwt.push_str(&URL_SAFE_NO_PAD.encode(&signature));
    Ok(SecretString::from(jwt))
}

/// What is wrong with a PEM section, never quoting it (the text is a private key).
fn pem_problem(e: &rustls_pki_types::pem::Error) -> String {
    use rustls_pki_types::pem::Error;
    match e {
        Error::MissingSectionEnd { .. } => "no `-----END` line".into(),
        Error::Base64Decode(detail) => format!("bad base64: {detail}"),
        Error::NoItemsFound => "no key section of that kind".into(),
        _ => "not a well-formed PEM section".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_path(name: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokens").join(name)
    }

    fn fixture(name: &str) -> SecretString {
        SecretString::from(std::fs::read_to_string(fixture_path(name)).unwrap())
    }

    #[test]
    fn signs_rs256_with_github_claims() {
        let key = AppKey::from_pem(&fixture("app-key.pem"), "test").unwrap();
        let jwt = key.sign("12345", 1_700_000_000).unwrap();
        let public = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokens/app-key.pub.pem"),
        )
        .unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<serde_json::Value>(
            jwt.expose_secret(),
            &jsonwebtoken::DecodingKey::from_rsa_pem(&public).unwrap(),
            &validation,
        )
        .unwrap();
        assert_eq!(data.claims["iat"], 1_700_000_000 - 60);
        assert_eq!(data.claims["exp"], 1_700_000_000 + 540);
        assert_eq!(data.claims["iss"], 12345);
        assert_eq!(key.sign("Iv1.abc", 1).unwrap().expose_secret().split('.').count(), 3);
        // The JOSE header, exactly; and the same key as PKCS#8 (`PRIVATE KEY`) signs the same
        // bytes (RSASSA-PKCS1-v1_5 is deterministic).
        let header = jwt.expose_secret().split('.').next().unwrap_or_default().to_string();
        assert_eq!(URL_SAFE_NO_PAD.decode(header).unwrap(), br#"{"alg":"RS256","typ":"JWT"}"#);
        let pkcs8 = AppKey::from_pem(&fixture("app-key.pkcs8.pem"), "test").unwrap();
        assert_eq!(pkcs8.sign("12345", 1_700_000_000).unwrap().expose_secret(), jwt.expose_secret());
    }

    #[test]
    fn refuses_keys_that_cannot_sign() {
        let err = |name: &str| AppKey::from_pem(&fixture(name), "file k.pem").unwrap_err();
        assert!(matches!(err("encrypted-key.pem"), KeyError::Encrypted { .. }));
        assert!(matches!(err("ec-key.pem"), KeyError::NotRsa { .. }));
        assert!(matches!(err("truncated-key.pem"), KeyError::Corrupt { .. }));
        // Whole PEM armour around a cut DER: parses, then cannot sign.
        let pem = std::fs::read_to_string(fixture_path("app-key.pem")).unwrap();
        let mut lines: Vec<&str> = pem.lines().collect();
        lines.drain(5..lines.len() - 1);
        let cut = SecretString::from(lines.join("\n"));
        assert!(matches!(AppKey::from_pem(&cut, "x").unwrap_err(), KeyError::Corrupt { .. }));
        assert!(matches!(AppKey::from_pem(&SecretString::from("hello"), "x").unwrap_err(), KeyError::NotPem { .. }));
        let openssh =
            SecretString::from("-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n");
        assert!(matches!(AppKey::from_pem(&openssh, "x").unwrap_err(), KeyError::NotRsa { .. }));
    }
}
