//! Settings shared by commands: the store URL and the secret key.

use anyhow::Context as _;
use ferry_store::backend::is_postgres_url;
use ferry_store::secrets::Cipher;

use crate::StoreArgs;

/// The metadata store URL: `--database-url`, else SQLite at `<data-dir>/ferry.db`.
pub fn database_url(args: &StoreArgs) -> anyhow::Result<String> {
    if let Some(url) = args.database_url.as_deref().filter(|u| !u.is_empty()) {
        return Ok(url.to_string());
    }
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating data directory {}", args.data_dir.display()))?;
    let path = args.data_dir.join("ferry.db");
    Ok(format!("sqlite://{}", path.display()))
}

/// The secret-encryption key: `FERRY_SECRET_KEY`, else (SQLite only) `<data-dir>/secret.key`.
pub fn cipher(args: &StoreArgs, database_url: &str) -> anyhow::Result<Cipher> {
    if let Ok(text) = std::env::var("FERRY_SECRET_KEY")
        && !text.trim().is_empty()
    {
        return Ok(Cipher::from_base64(&text)?);
    }
    if is_postgres_url(database_url) {
        anyhow::bail!(
            "FERRY_SECRET_KEY is required with a PostgreSQL store: every Ferry process must \
             encrypt and decrypt connection secrets with the same key. Generate one with \
             `openssl rand -base64 32` and set it in the environment of every process."
        );
    }
    let path = args.data_dir.join("secret.key");
    Cipher::load_or_generate(&path)
        .with_context(|| format!("loading secret key {}", path.display()))
}

/// Connection-type settings from the environment: Ferry's Salesforce connected app
/// (`FERRY_SALESFORCE_CLIENT_ID`, `FERRY_SALESFORCE_CLIENT_SECRET`) for the browser and code
/// connect modes, and extra trusted CAs (`FERRY_SALESFORCE_CA_FILE`, PEM) such as the
/// emulator's.
pub fn registry_settings() -> anyhow::Result<ferry_connectors::RegistrySettings> {
    let non_empty = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let oauth_app = match (
        non_empty("FERRY_SALESFORCE_CLIENT_ID"),
        non_empty("FERRY_SALESFORCE_CLIENT_SECRET"),
    ) {
        (Some(id), Some(secret)) => Some(ferry_salesforce::OAuthApp::new(id, secret)),
        (None, None) => None,
        _ => anyhow::bail!(
            "set both FERRY_SALESFORCE_CLIENT_ID and FERRY_SALESFORCE_CLIENT_SECRET, or neither"
        ),
    };
    let mut root_certificates_pem = Vec::new();
    if let Some(path) = non_empty("FERRY_SALESFORCE_CA_FILE") {
        root_certificates_pem.push(
            std::fs::read(&path)
                .with_context(|| format!("reading FERRY_SALESFORCE_CA_FILE {path}"))?,
        );
    }
    Ok(ferry_connectors::RegistrySettings {
        salesforce: ferry_connectors::salesforce::SalesforceSettings {
            oauth_app,
            root_certificates_pem,
        },
    })
}

/// The URL with any password hidden, for logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((credentials, host)) = rest.rsplit_once('@') else {
        return url.to_string();
    };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:********@{host}"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://ferry:s3cret@db:5432/ferry"),
            "postgres://ferry:********@db:5432/ferry"
        );
        assert_eq!(
            redact_url("sqlite://./ferry-data/ferry.db"),
            "sqlite://./ferry-data/ferry.db"
        );
        assert_eq!(
            redact_url("postgres://postgres@db/x"),
            "postgres://postgres@db/x"
        );
    }
}
