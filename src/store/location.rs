//! Where the state store lives: a SQLite file (the default), or a PostgreSQL server named by a
//! URL (`postgres://` or `postgresql://`, libpq's URI form:
//! <https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-CONNSTRING-URIS>) that a
//! fleet of self-hosted runners shares for one ledger, one budget and one breaker state.
//!
//! Passwords: a URL may carry one only when it comes from the environment (`AGENTCTL_STATE`,
//! which a workflow fills from a secret). A URL in the config file (committed to the repository)
//! or on the command line (visible to every process through `ps`) that holds a password is
//! refused. Without one in the URL, `PGPASSWORD` is used, as libpq does. Whichever is used is
//! registered with the log's redactor (and masked in Actions) as soon as it is read, and no
//! message ever prints the URL itself: errors name [`PgLocation::name`], which has no password.
//!
//! TLS (rustls, ring) is used when the URL asks for it with `sslmode`:
//! - absent or `disable`: no TLS (a warning for a host other than loopback or a socket);
//! - `allow` or `prefer`: TLS when the server offers it;
//! - `require`, `verify-ca`, `verify-full`: TLS or no connection.
//!
//! Unlike libpq, every TLS connection verifies the server's certificate chain and name (libpq
//! checks them only for `verify-full`): against `sslrootcert=FILE` (PEM) when given, else the
//! system's roots ([`crate::tls`]; `sslrootcert=system` says the same). Other parameters go to
//! `tokio-postgres` as they are (`connect_timeout`, `application_name`, `options`, ...); one it
//! does not know is an error naming it. Unset, `connect_timeout` is 10 seconds and
//! `application_name` is `agentctl`.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use tokio_postgres::config::{Host, SslMode};

use super::StoreError;
use crate::context::Env;
use crate::env_vars::{AGENTCTL_STATE, PGPASSWORD};

/// How long a connection attempt may take when the URL gives no `connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a state-store location was written, which decides whether it may hold a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateSource {
    /// The `AGENTCTL_STATE` environment variable: may hold a password.
    Env,
    /// The config file's `state` (committed to the repository): no password.
    Config,
    /// A `--state` flag (seen by every process through `ps`): no password.
    Flag,
}

impl StateSource {
    fn describe(self) -> &'static str {
        match self {
            StateSource::Env => "AGENTCTL_STATE",
            StateSource::Config => "the config's `state`",
            StateSource::Flag => "--state",
        }
    }
}

/// A state store: a SQLite file or a PostgreSQL server.
#[derive(Debug, Clone)]
pub enum Location {
    /// A SQLite database file (created with its folder when needed).
    File(PathBuf),
    /// A PostgreSQL server, database and role (boxed: the driver's config is large).
    Postgres(Box<PgLocation>),
}

impl Location {
    /// Reads `text` written in `origin`: a `postgres://` or `postgresql://` URL is a
    /// [`PgLocation`], anything else a file path.
    ///
    /// Errors: [`StoreError::BadUrl`] for a URL that does not parse, has an unknown `sslmode` or
    /// parameter, or holds a password outside the environment.
    pub fn parse(text: &Path, origin: StateSource, env: &Env) -> Result<Self, StoreError> {
        match text.to_str() {
            Some(url) if is_postgres_url(url) => {
                PgLocation::parse(url, origin, env).map(|pg| Location::Postgres(Box::new(pg)))
            }
            _ => Ok(Location::File(text.to_path_buf())),
        }
    }

    /// What messages call it: the file's path, or the URL without its password.
    pub fn name(&self) -> String {
        match self {
            Location::File(path) => path.display().to_string(),
            Location::Postgres(pg) => pg.name.clone(),
        }
    }

    /// Whether there can be recorded state to read: the file exists; a server always counts.
    pub fn may_hold_state(&self) -> bool {
        match self {
            Location::File(path) => path.exists(),
            Location::Postgres(_) => true,
        }
    }
}

/// Checks a PostgreSQL URL written in `origin` without using it (`config validate`): the
/// errors of [`Location::parse`], nothing read from the environment, nothing registered.
pub fn check_url(url: &str, origin: StateSource) -> Result<(), StoreError> {
    PgLocation::read(url, origin).map(|_| ())
}

/// Whether `text` is a PostgreSQL connection URL.
pub fn is_postgres_url(text: &str) -> bool {
    let lower = text.get(..13).unwrap_or(text).to_ascii_lowercase();
    lower.starts_with("postgres://") || lower.starts_with("postgresql://")
}

/// `url` with its scheme in lowercase: a scheme is case-insensitive (RFC 3986 §3.1), and the
/// driver reads only lowercase.
fn lowercase_scheme(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => format!("{}://{rest}", scheme.to_ascii_lowercase()),
        None => url.to_owned(),
    }
}

/// When to use TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tls {
    Off,
    Prefer,
    Require,
}

/// A parsed PostgreSQL location. Its `Debug` shows the name only.
#[derive(Clone)]
pub struct PgLocation {
    config: tokio_postgres::Config,
    tls: Tls,
    /// `sslrootcert`: the PEM roots to trust instead of the system's.
    root_cert: Option<PathBuf>,
    name: String,
    address: String,
}

impl std::fmt::Debug for PgLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgLocation").field("name", &self.name).finish_non_exhaustive()
    }
}

impl PgLocation {
    /// [`PgLocation::read`], then: `PGPASSWORD` when the URL has no password, the password
    /// registered with the log's redactor, and a warning for a remote host without `sslmode`.
    fn parse(url: &str, origin: StateSource, env: &Env) -> Result<Self, StoreError> {
        let (mut location, sslmode_given) = Self::read(url, origin)?;
        if location.config.get_password().is_none() {
            if let Some(password) = env.get(PGPASSWORD).filter(|p| !p.is_empty()) {
                location.config.password(password.as_bytes());
            }
        }
        if let Some(password) = location.config.get_password() {
            let password = String::from_utf8_lossy(password).into_owned();
            crate::log::register_process_secret(&SecretString::from(password));
        }
        let local = match location.config.get_hosts().first() {
            Some(Host::Tcp(h)) => h == "localhost" || h.starts_with("127.") || h == "::1",
            _ => true,
        };
        if !sslmode_given && !local {
            crate::log::warn(&format!(
                "state store {}: the URL has no sslmode, so the connection is not encrypted; add \
                 sslmode=require (or sslmode=disable to say that is meant)",
                location.name
            ));
        }
        Ok(location)
    }

    /// The URL as written, with no side effect: refused when it does not parse, has an unknown
    /// `sslmode` or parameter, names no host, or holds a password outside the environment.
    /// Also says whether `sslmode` was given.
    fn read(url: &str, origin: StateSource) -> Result<(Self, bool), StoreError> {
        let bad = |detail: String| StoreError::BadUrl { origin: origin.describe(), detail };
        let url = lowercase_scheme(url);
        let (base, query) = url.split_once('?').unwrap_or((&url, ""));
        let mut rest = Vec::new();
        let (mut tls, mut root_cert, mut sslmode_given) = (Tls::Off, None, false);
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match key.as_ref() {
                "sslmode" => {
                    sslmode_given = true;
                    tls = match value.as_ref() {
                        "disable" => Tls::Off,
                        "allow" | "prefer" => Tls::Prefer,
                        "require" | "verify-ca" | "verify-full" => Tls::Require,
                        other => {
                            return Err(bad(format!(
                                "sslmode={other} is not one of disable, allow, prefer, require, verify-ca, verify-full"
                            )))
                        }
                    }
                }
                "sslrootcert" if value == "system" => root_cert = None,
                "sslrootcert" => root_cert = Some(PathBuf::from(value.as_ref())),
                _ => rest.push((key.into_owned(), value.into_owned())),
            }
        }
        let mut text = base.to_owned();
        if !rest.is_empty() {
            text.push('?');
            text.push_str(&url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&rest).finish());
        }
        // tokio-postgres's messages name the part at fault, never the password.
        let mut config = tokio_postgres::Config::from_str(&text).map_err(|e| bad(crate::log::error_chain(&e)))?;
        if config.get_password().is_some() && origin != StateSource::Env {
            return Err(bad(format!(
                "the URL holds a password, and {} is no place for one (a config file is committed, a \
                 command line is seen by every process)\nhelp: put the password in PGPASSWORD, or the \
                 whole URL in AGENTCTL_STATE from a secret",
                origin.describe()
            )));
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("agentctl");
        }
        config.ssl_mode(match tls {
            Tls::Off => SslMode::Disable,
            Tls::Prefer => SslMode::Prefer,
            Tls::Require => SslMode::Require,
        });
        let host = match config.get_hosts().first() {
            Some(Host::Tcp(h)) if h.contains(':') => format!("[{h}]"),
            Some(Host::Tcp(h)) => h.clone(),
            #[cfg(unix)]
            Some(Host::Unix(dir)) => dir.display().to_string(),
            None => return Err(bad("the URL names no host".into())),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let address = format!("{host}:{port}");
        let user = config.get_user().map(|u| format!("{u}@")).unwrap_or_default();
        let name = format!("postgres://{user}{address}/{}", config.get_dbname().unwrap_or(""));
        Ok((Self { config, tls, root_cert, name, address }, sslmode_given))
    }

    /// `postgres://user@host:port/dbname`: the URL without password or parameters.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `host:port` of the (first) server.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The driver's configuration (its `Debug` hides the password).
    pub(super) fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// The rustls configuration when TLS may be used: `sslrootcert`'s roots, or the system's
    /// ([`crate::tls::client_config`]), with ALPN `postgresql` (PostgreSQL 17 checks it when
    /// sent; earlier servers ignore it).
    ///
    /// Errors: [`StoreError::BadUrl`] for an `sslrootcert` file that cannot be read or holds
    /// no certificate.
    pub(super) fn tls_config(&self) -> Result<Option<rustls::ClientConfig>, StoreError> {
        if self.tls == Tls::Off {
            return Ok(None);
        }
        let mut config = match &self.root_cert {
            None => crate::tls::client_config(),
            Some(file) => {
                use rustls_pki_types::pem::PemObject as _;
                let bad = |detail: String| StoreError::BadUrl { origin: "the URL's sslrootcert", detail };
                let mut roots = rustls::RootCertStore::empty();
                let certs = rustls_pki_types::CertificateDer::pem_file_iter(file)
                    .map_err(|e| bad(format!("cannot read {}: {e}", file.display())))?;
                for cert in certs {
                    let cert = cert.map_err(|e| bad(format!("{}: {e}", file.display())))?;
                    roots.add(cert).map_err(|e| bad(format!("{}: {e}", file.display())))?;
                }
                if roots.is_empty() {
                    return Err(bad(format!("{} holds no PEM certificate", file.display())));
                }
                rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                    .with_safe_default_protocol_versions()
                    .map_err(|e| bad(e.to_string()))?
                    .with_root_certificates(roots)
                    .with_no_client_auth()
            }
        };
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(Some(config))
    }

    /// A connection failure as the store error a user can act on: the server refusing the
    /// credentials is [`StoreError::Auth`] (exit 4); anything else (refused, timed out, TLS,
    /// no such database) is [`StoreError::Connect`] naming `host:port` (exit 1).
    pub(super) fn connect_error(&self, e: &tokio_postgres::Error) -> StoreError {
        use tokio_postgres::error::SqlState;
        let refused = e.as_db_error().is_some_and(|db| {
            *db.code() == SqlState::INVALID_PASSWORD || *db.code() == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        });
        // tokio-postgres's own words when the server asks for a password and there is none.
        let missing = std::iter::successors(std::error::Error::source(e), |s| s.source())
            .any(|s| s.to_string() == "password missing");
        if refused || missing {
            return StoreError::Auth { store: self.name.clone(), cause: crate::log::error_chain(e) };
        }
        let help = if e.as_db_error().is_some() {
            "the server answered but refused the session: check the database name in the URL and the role's \
             rights on it"
                .to_owned()
        } else if std::iter::successors(std::error::Error::source(e), |s| s.source())
            .any(|s| s.is::<rustls::Error>() || s.to_string().contains("certificate"))
            || e.to_string().contains("TLS")
        {
            "the server's certificate must chain to a trusted root and name the host: give its CA with \
             sslrootcert=/path/to/ca.pem in the URL (agentctl verifies every TLS connection; libpq's \
             `require` does not)"
                .to_owned()
        } else {
            format!(
                "check that a server runs and accepts TCP connections at {} (the host and port of the URL in \
                 AGENTCTL_STATE or the config's `state`), or unset them to use the local SQLite file",
                self.address
            )
        };
        StoreError::Connect {
            store: self.name.clone(),
            address: self.address.clone(),
            cause: crate::log::error_chain(e),
            help,
        }
    }
}

/// The secrets a run's environment holds for the state store: the password of a PostgreSQL
/// URL in `AGENTCTL_STATE` and `PGPASSWORD`. A run's redactor takes them before anything is
/// printed, whether or not the store is ever opened.
pub fn env_secrets(env: &Env) -> Vec<SecretString> {
    let mut out = Vec::new();
    if let Some(url) = env.get(AGENTCTL_STATE).filter(|u| is_postgres_url(u)) {
        // Not [`PgLocation::read`]: the password is taken even from a URL whose parameters that
        // refuses, so the error about them is printed with the password already masked.
        let url = lowercase_scheme(url);
        let base = url.split_once('?').map_or(url.as_str(), |(b, _)| b);
        if let Ok(Some(password)) = tokio_postgres::Config::from_str(base).map(|c| c.get_password().map(<[u8]>::to_vec))
        {
            out.push(SecretString::from(String::from_utf8_lossy(&password).into_owned()));
        }
    }
    if let Some(p) = env.get(PGPASSWORD).filter(|p| !p.is_empty()) {
        out.push(SecretString::from(p.to_owned()));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // unwrap() is fine in tests (STYLE.md habit 7)
mod tests {
    use super::*;

    fn pg(url: &str, origin: StateSource, env: &[(&str, &str)]) -> Result<PgLocation, StoreError> {
        match Location::parse(Path::new(url), origin, &Env::from_pairs(env.iter().copied()))? {
            Location::Postgres(pg) => Ok(*pg),
            Location::File(p) => panic!("{url} read as the file {}", p.display()),
        }
    }

    #[test]
    fn a_path_is_a_file_and_a_url_is_postgres() {
        let env = Env::from_pairs([]);
        for path in ["state.db", "/var/agentctl/state.db", "postgres.db", "./postgres:/x"] {
            assert!(
                matches!(Location::parse(Path::new(path), StateSource::Config, &env).unwrap(), Location::File(_)),
                "{path}"
            );
        }
        for url in ["postgres://h/db", "postgresql://u@h:5433/db", "POSTGRES://h/db"] {
            assert!(
                matches!(Location::parse(Path::new(url), StateSource::Config, &env).unwrap(), Location::Postgres(_)),
                "{url}"
            );
        }
    }

    #[test]
    fn the_name_and_address_hold_no_password() {
        let loc = pg("postgres://ci:s3cr%40t@db.internal:6432/ledger?sslmode=require", StateSource::Env, &[]).unwrap();
        assert_eq!(loc.name(), "postgres://ci@db.internal:6432/ledger");
        assert_eq!(loc.address(), "db.internal:6432");
        assert_eq!(loc.config().get_password(), Some(&b"s3cr@t"[..]));
        let debug = format!("{:?} {:?}", loc, Location::Postgres(Box::new(loc.clone())));
        assert!(!debug.contains("s3cr"), "{debug}");
        let v6 = pg("postgres://ci@[::1]/ledger", StateSource::Config, &[]).unwrap();
        assert_eq!(v6.address(), "[::1]:5432");
    }

    #[test]
    fn a_password_outside_the_environment_is_refused_without_echoing_it() {
        for origin in [StateSource::Config, StateSource::Flag] {
            let err = pg("postgres://ci:hunter22@db/ledger", origin, &[]).unwrap_err();
            let text = err.to_string();
            assert!(matches!(err, StoreError::BadUrl { .. }), "{err:?}");
            assert!(text.contains("PGPASSWORD") && !text.contains("hunter22"), "{text}");
        }
        assert!(pg("postgres://ci:hunter22@db/ledger", StateSource::Env, &[]).is_ok());
    }

    #[test]
    fn pgpassword_fills_a_url_without_one_and_defaults_are_set() {
        let loc = pg("postgres://ci@127.0.0.1/ledger", StateSource::Config, &[("PGPASSWORD", "pw-from-env")]).unwrap();
        assert_eq!(loc.config().get_password(), Some(&b"pw-from-env"[..]));
        assert_eq!(loc.config().get_connect_timeout(), Some(&DEFAULT_CONNECT_TIMEOUT));
        assert_eq!(loc.config().get_application_name(), Some("agentctl"));
        let own =
            pg("postgres://ci:own@127.0.0.1/ledger?connect_timeout=3", StateSource::Env, &[("PGPASSWORD", "other")])
                .unwrap();
        assert_eq!(own.config().get_password(), Some(&b"own"[..]));
        assert_eq!(own.config().get_connect_timeout(), Some(&Duration::from_secs(3)));
    }

    #[test]
    fn sslmode_picks_tls_and_unknown_values_or_parameters_are_refused() {
        let mode = |q: &str| pg(&format!("postgres://ci@127.0.0.1/db{q}"), StateSource::Config, &[]).map(|l| l.tls);
        assert_eq!(mode("").unwrap(), Tls::Off);
        assert_eq!(mode("?sslmode=disable").unwrap(), Tls::Off);
        assert_eq!(mode("?sslmode=prefer").unwrap(), Tls::Prefer);
        for m in ["require", "verify-ca", "verify-full"] {
            assert_eq!(mode(&format!("?sslmode={m}&sslrootcert=/ca.pem")).unwrap(), Tls::Require, "{m}");
        }
        let err = mode("?sslmode=sometimes").unwrap_err().to_string();
        assert!(err.contains("sslmode=sometimes"), "{err}");
        let err = mode("?sslcert=/client.pem").unwrap_err();
        assert!(matches!(err, StoreError::BadUrl { .. }), "{err:?}");
        assert!(err.to_string().contains("sslcert"), "{err}");
    }

    #[test]
    fn a_missing_root_certificate_file_is_named() {
        let loc =
            pg("postgres://ci@127.0.0.1/db?sslmode=require&sslrootcert=/nonexistent/ca.pem", StateSource::Config, &[])
                .unwrap();
        let err = loc.tls_config().unwrap_err().to_string();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
        let system =
            pg("postgres://ci@127.0.0.1/db?sslmode=require&sslrootcert=system", StateSource::Config, &[]).unwrap();
        assert_eq!(system.tls_config().unwrap().unwrap().alpn_protocols, vec![b"postgresql".to_vec()]);
        assert!(pg("postgres://ci@127.0.0.1/db", StateSource::Config, &[]).unwrap().tls_config().unwrap().is_none());
    }

    #[test]
    fn env_secrets_are_the_url_password_and_pgpassword() {
        use secrecy::ExposeSecret;
        let env = Env::from_pairs([
            ("AGENTCTL_STATE", "postgres://ci:from%2Furl@db/ledger?sslmode=require"),
            ("PGPASSWORD", "from-pgpassword"),
        ]);
        let got: Vec<String> = env_secrets(&env).iter().map(|s| s.expose_secret().to_owned()).collect();
        assert_eq!(got, vec!["from/url".to_owned(), "from-pgpassword".to_owned()]);
        assert!(env_secrets(&Env::from_pairs([("AGENTCTL_STATE", "/tmp/state.db")])).is_empty());
    }
}
