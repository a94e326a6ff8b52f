//! Pieces shared by the SQL database connectors (PostgreSQL, MySQL): host and PEM checks,
//! the rules for options Ferry does not support yet, and turning connection failures into
//! messages a user can act on.

use std::io;
use std::net::Ipv6Addr;
use std::time::Duration;

use crate::FieldError;

/// Polytomic operation strings of the SQL database types: model source with SQL queries and
/// filters, sync target that can create and truncate tables.
pub(crate) const OPERATIONS: &[&str] = &[
    "FIELDSETQUERY",
    "TARGET",
    "TargetCreator",
    "Filters",
    "IdentityFunctions",
    "SupportsSQL",
    "IsTruncatable",
];

/// How long a connectivity check may take, connect and `SELECT 1` together.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// Checks a `hostname`: a host name or an IP address, not a URL and without a port.
pub(crate) fn check_hostname(field: &str, host: &str) -> Result<(), FieldError> {
    let fail = |why: &str| {
        Err(FieldError::new(
            field,
            format!(
                "expected a host name or IP address such as `db.example.com` or `10.0.0.5`; \
                 got `{host}` ({why})"
            ),
        ))
    };
    if host.contains("://") {
        return fail("a URL is not accepted; give only the host");
    }
    if host.chars().any(char::is_whitespace) {
        return fail("whitespace is not allowed");
    }
    if host.starts_with('[') || host.ends_with(']') {
        return fail("write IPv6 addresses without brackets");
    }
    if host.contains(':') && host.parse::<Ipv6Addr>().is_err() {
        return fail("put the port in `port`");
    }
    if host.contains(['/', '?', '#', '@']) {
        return fail("only letters, digits, `-`, `_`, `.` (and `:` in IPv6 addresses) are allowed");
    }
    Ok(())
}

/// What a PEM value must contain.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Pem {
    /// One or more `CERTIFICATE` blocks.
    Certificate,
    /// A private key (`PRIVATE KEY`, `RSA PRIVATE KEY`, `EC PRIVATE KEY`).
    PrivateKey,
}

/// Checks that a secret looks like PEM of the right kind (the TLS handshake parses it fully).
pub(crate) fn check_pem(field: &str, value: &str, kind: Pem) -> Result<(), FieldError> {
    let ok = match kind {
        Pem::Certificate => value.contains("-----BEGIN CERTIFICATE-----"),
        Pem::PrivateKey => value.contains("-----BEGIN") && value.contains("PRIVATE KEY-----"),
    };
    if ok {
        return Ok(());
    }
    let expected = match kind {
        Pem::Certificate => "a PEM certificate (`-----BEGIN CERTIFICATE-----` ...)",
        Pem::PrivateKey => "a PEM private key (`-----BEGIN PRIVATE KEY-----` ...)",
    };
    Err(FieldError::new(field, format!("expected {expected}")))
}

/// Whether an optional string is set to something other than blanks.
pub(crate) fn is_set(value: Option<&str>) -> bool {
    value.is_some_and(|v| !v.trim().is_empty())
}

/// The SSH options: tunnelling is not implemented, so asking for it is an error rather than
/// a silently direct connection. `ssh_user` and `ssh_port` carry defaults forms send along;
/// they are accepted while `ssh` is off.
pub(crate) fn reject_ssh(
    ssh: bool,
    ssh_host: Option<&str>,
    ssh_private_key: Option<&str>,
) -> Result<(), FieldError> {
    const MESSAGE: &str = "SSH tunnelling is not supported yet; connect directly (ssh: false, \
                           no ssh_host or ssh_private_key) or expose the database to Ferry \
                           another way";
    if ssh {
        return Err(FieldError::new("ssh", MESSAGE));
    }
    if is_set(ssh_host) {
        return Err(FieldError::new("ssh_host", MESSAGE));
    }
    if is_set(ssh_private_key) {
        return Err(FieldError::new("ssh_private_key", MESSAGE));
    }
    Ok(())
}

/// Change detection through the database's replication log is not implemented.
pub(crate) fn reject_change_detection(change_detection: bool) -> Result<(), FieldError> {
    if change_detection {
        return Err(FieldError::new(
            "change_detection",
            "change detection through the replication log is not supported yet; set it to \
             false (syncs detect changes by comparing with what they last wrote)",
        ));
    }
    Ok(())
}

/// Explains an IO failure while connecting to `host:port`.
pub(crate) fn describe_io(error: &io::Error, product: &str, host: &str, port: u16) -> String {
    let target = format!("{host}:{port}");
    let text = error.to_string();
    if let Some(tls) = describe_certificate_failure(&text, product, host, port) {
        return tls;
    }
    if is_dns_failure(&text) {
        return format!("could not resolve host \"{host}\": no such host name (check hostname)");
    }
    match error.kind() {
        io::ErrorKind::ConnectionRefused => format!(
            "could not connect to {target}: connection refused (is {product} running and \
             listening on that port?)"
        ),
        io::ErrorKind::TimedOut => format!(
            "could not connect to {target}: timed out (is the host reachable, and does a \
             firewall allow Ferry in?)"
        ),
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => format!(
            "the connection to {target} was closed by the server (is this a {product} server, \
             and are TLS settings right?)"
        ),
        io::ErrorKind::UnexpectedEof => format!(
            "the server at {target} closed the connection unexpectedly (is this a {product} \
             server, and are TLS settings right?)"
        ),
        io::ErrorKind::PermissionDenied => {
            format!("could not connect to {target}: permission denied")
        }
        _ if text.contains("unreachable") => {
            format!("could not connect to {target}: host or network unreachable")
        }
        _ => format!("could not connect to {target}: {text}"),
    }
}

fn is_dns_failure(text: &str) -> bool {
    const MARKERS: &[&str] = &[
        "failed to lookup address",
        "Name or service not known",
        "nodename nor servname",
        "No address associated",
        "Temporary failure in name resolution",
        "no such host",
    ];
    MARKERS.iter().any(|m| text.contains(m))
}

/// Explains a TLS failure while connecting to `host:port`.
pub(crate) fn describe_tls(error: &str, product: &str, host: &str, port: u16) -> String {
    let target = format!("{host}:{port}");
    if error.contains("does not support TLS") {
        return format!(
            "the {product} server at {target} does not support TLS, but ssl is true; enable TLS \
             on the server or set ssl to false to connect without encryption"
        );
    }
    if let Some(message) = describe_certificate_failure(error, product, host, port) {
        return message;
    }
    format!("TLS with the {product} server at {target} failed: {error}")
}

/// Explains rustls' certificate verdicts (they reach us inside IO errors as well as TLS ones).
fn describe_certificate_failure(
    text: &str,
    product: &str,
    host: &str,
    port: u16,
) -> Option<String> {
    let prefix = format!("TLS with the {product} server at {host}:{port} failed");
    if let Some(verdict) = text.split("invalid peer certificate: ").nth(1) {
        let reason = if verdict.starts_with("UnknownIssuer") {
            "its certificate is not signed by ca_cert".to_string()
        } else if verdict.starts_with("NotValidForName") {
            format!(
                "its certificate is not valid for \"{host}\"; use the host name the certificate \
                 was issued for"
            )
        } else if verdict.starts_with("Expired") {
            "its certificate has expired".to_string()
        } else if verdict.starts_with("NotValidYet") {
            "its certificate is not valid yet".to_string()
        } else if verdict.starts_with("Revoked") {
            "its certificate has been revoked".to_string()
        } else {
            format!("its certificate was rejected ({verdict})")
        };
        return Some(format!("{prefix}: {reason}"));
    }
    if let Some(alert) = text.split("received fatal alert: ").nth(1) {
        return Some(format!(
            "{prefix}: the server ended the handshake ({alert}); if it requires a client \
             certificate, check client_certs, client_certificate and client_key"
        ));
    }
    None
}

/// The message a check fails with when it exceeds [`CHECK_TIMEOUT`].
pub(crate) fn timeout_message(product: &str, host: &str, port: u16) -> String {
    format!(
        "could not connect to {host}:{port}: no answer within {} s (is the host reachable, is \
         {product} listening on that port, and does a firewall allow Ferry in?)",
        CHECK_TIMEOUT.as_secs()
    )
}

/// Removes secret values that a driver might have echoed into a message.
pub(crate) fn scrub(mut message: String, secrets: &[&str]) -> String {
    for secret in secrets {
        if !secret.is_empty() && message.contains(secret) {
            message = message.replace(secret, "********");
        }
    }
    message
}

/// The `Connector` impl shared by the SQL database types: they differ only in their name and
/// configuration type (`from_value`, `to_value`, async `check`), and all are model sources.
macro_rules! sql_database_connector {
    ($connector:ty, $config:ty, $name:literal) => {
        impl $crate::Connector for $connector {
            fn info(&self) -> $crate::ConnectionTypeInfo {
                $crate::ConnectionTypeInfo {
                    id: TYPE_ID,
                    name: $name,
                    use_oauth: false,
                    capabilities: $crate::Capabilities {
                        source: true,
                        destination: true,
                        enrichment: false,
                        orchestration: false,
                    },
                    operations: $crate::sql::OPERATIONS,
                }
            }

            $crate::schema::config_spec_methods!(spec);

            fn validate(
                &self,
                config: &serde_json::Value,
            ) -> Result<serde_json::Value, $crate::FieldError> {
                <$config>::from_value(config).map(|parsed| parsed.to_value())
            }

            fn model_source(&self) -> Option<&dyn $crate::source::ModelSource> {
                Some(self)
            }

            fn check<'a>(
                &'a self,
                config: &'a serde_json::Value,
            ) -> futures_util::future::BoxFuture<
                'a,
                Result<$crate::ConnectionHealth, $crate::CheckError>,
            > {
                Box::pin(async move {
                    let parsed = <$config>::from_value(config).map_err(|error| {
                        $crate::CheckError::new(format!("invalid configuration: {error}"))
                    })?;
                    parsed.check().await?;
                    Ok($crate::ConnectionHealth {
                        status: $crate::ConnectionStatus::Healthy,
                        message: None,
                        learned: Default::default(),
                    })
                })
            }
        }
    };
}
pub(crate) use sql_database_connector;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames() {
        for ok in ["db.example.com", "10.0.0.5", "::1", "db_1", "localhost"] {
            assert!(check_hostname("hostname", ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("postgres://db.example.com", "URL"),
            ("db.example.com:5432", "port"),
            ("db example", "whitespace"),
            ("[::1]", "brackets"),
            ("db.example.com/x", "only letters"),
            // A leading slash would make the PostgreSQL driver use a Unix socket on Ferry's
            // own machine.
            ("/var/run/postgresql", "only letters"),
        ] {
            let e = check_hostname("hostname", bad).expect_err(bad);
            assert_eq!(e.field, "hostname");
            assert!(e.message.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn pem_checks() {
        assert!(
            check_pem(
                "ca_cert",
                "-----BEGIN CERTIFICATE-----\nx",
                Pem::Certificate
            )
            .is_ok()
        );
        assert!(
            check_pem(
                "client_key",
                "-----BEGIN RSA PRIVATE KEY-----\n",
                Pem::PrivateKey
            )
            .is_ok()
        );
        let e = check_pem("ca_cert", "not a cert", Pem::Certificate).expect_err("bad");
        assert_eq!(e.field, "ca_cert");
        assert!(e.message.contains("PEM certificate"));
        assert!(check_pem("client_key", "-----BEGIN CERTIFICATE-----", Pem::PrivateKey).is_err());
    }

    #[test]
    fn io_errors_read_well() {
        let refused = io::Error::new(io::ErrorKind::ConnectionRefused, "Connection refused");
        assert_eq!(
            describe_io(&refused, "PostgreSQL", "127.0.0.1", 1),
            "could not connect to 127.0.0.1:1: connection refused (is PostgreSQL running and \
             listening on that port?)"
        );
        let dns =
            io::Error::other("failed to lookup address information: Name or service not known");
        assert!(
            describe_io(&dns, "MySQL", "nope.invalid", 3306)
                .starts_with("could not resolve host \"nope.invalid\"")
        );
    }

    #[test]
    fn certificate_failures_read_well() {
        let unknown = io::Error::new(
            io::ErrorKind::InvalidData,
            "invalid peer certificate: UnknownIssuer",
        );
        assert_eq!(
            describe_io(&unknown, "PostgreSQL", "db", 5432),
            "TLS with the PostgreSQL server at db:5432 failed: its certificate is not signed by \
             ca_cert"
        );
        let name = "invalid peer certificate: NotValidForNameContext { expected: ... }";
        assert!(describe_tls(name, "PostgreSQL", "db", 5432).contains("not valid for \"db\""));
        let alert = "received fatal alert: CertificateRequired";
        assert!(describe_tls(alert, "PostgreSQL", "db", 5432).contains("client_certificate"));
        assert_eq!(
            describe_tls("server does not support TLS", "MySQL", "db", 3306),
            "the MySQL server at db:3306 does not support TLS, but ssl is true; enable TLS on \
             the server or set ssl to false to connect without encryption"
        );
    }

    #[test]
    fn scrub_removes_secrets() {
        assert_eq!(
            scrub("bad hunter2!".into(), &["hunter2", ""]),
            "bad ********!"
        );
    }
}
