//! Encryption of secret configuration values at rest (XChaCha20-Poly1305).
//!
//! The 32-byte key comes from `FERRY_SECRET_KEY` (base64) or, on the embedded default, from
//! `<data-dir>/secret.key`, generated once with mode 0600. Each ciphertext is
//! `version (1 byte) || nonce (24 bytes) || sealed bytes`; the version byte lets the format
//! evolve. Decryption with the wrong key fails loudly instead of returning garbage.

use std::fmt;
use std::path::Path;

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

const FORMAT_VERSION: u8 = 1;
const NONCE_LEN: usize = 24;

/// Errors loading a key or decrypting.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The key text is not base64 of 32 bytes.
    #[error("FERRY_SECRET_KEY must be 32 bytes encoded as base64 ({0})")]
    InvalidKey(String),
    /// Reading or writing the key file failed.
    #[error("secret key file {path}: {source}")]
    KeyFile {
        /// The file.
        path: String,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The ciphertext could not be decrypted (wrong key or corrupted data).
    #[error("stored secrets could not be decrypted: wrong FERRY_SECRET_KEY or corrupted data")]
    Decrypt,
    /// Encryption failed.
    #[error("encryption failed")]
    Encrypt,
}

/// Encrypts and decrypts secret values. `Debug` never shows the key.
#[derive(Clone)]
pub struct Cipher {
    aead: XChaCha20Poly1305,
}

impl fmt::Debug for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cipher(********)")
    }
}

impl Cipher {
    /// Builds a cipher from raw key bytes.
    pub fn from_key(key: &[u8; 32]) -> Self {
        Cipher {
            aead: XChaCha20Poly1305::new(key.into()),
        }
    }

    /// Parses a base64 key (standard or URL-safe alphabet, padding optional).
    pub fn from_base64(text: &str) -> Result<Self, SecretError> {
        let text = text.trim();
        let engines = [
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::STANDARD_NO_PAD,
            base64::engine::general_purpose::URL_SAFE,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ];
        let bytes = engines
            .iter()
            .find_map(|engine| engine.decode(text).ok())
            .ok_or_else(|| SecretError::InvalidKey("not valid base64".to_string()))?;
        let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            SecretError::InvalidKey(format!("decoded to {} bytes, expected 32", bytes.len()))
        })?;
        Ok(Cipher::from_key(&key))
    }

    /// Loads the key from `path`, generating it (mode 0600) when the file does not exist.
    pub fn load_or_generate(path: &Path) -> Result<Self, SecretError> {
        let io_error = |source| SecretError::KeyFile {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => Cipher::from_base64(&text),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let key = XChaCha20Poly1305::generate_key(&mut OsRng);
                let encoded = base64::engine::general_purpose::STANDARD.encode(key);
                write_private_file(path, encoded.as_bytes()).map_err(io_error)?;
                Ok(Cipher {
                    aead: XChaCha20Poly1305::new(&key),
                })
            }
            Err(error) => Err(io_error(error)),
        }
    }

    /// Generates a fresh random key, base64-encoded (for `FERRY_SECRET_KEY`).
    pub fn generate_base64() -> String {
        let key = XChaCha20Poly1305::generate_key(&mut OsRng);
        base64::engine::general_purpose::STANDARD.encode(key)
    }

    /// Encrypts `plaintext`.
    pub fn encrypt(&self, plaintext: &[u8]) -> Result<Vec<u8>, SecretError> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = self
            .aead
            .encrypt(&nonce, plaintext)
            .map_err(|_| SecretError::Encrypt)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(FORMAT_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Decrypts what [`Cipher::encrypt`] produced.
    pub fn decrypt(&self, ciphertext: &[u8]) -> Result<Vec<u8>, SecretError> {
        if ciphertext.len() < 1 + NONCE_LEN || ciphertext[0] != FORMAT_VERSION {
            return Err(SecretError::Decrypt);
        }
        let nonce = XNonce::from_slice(&ciphertext[1..1 + NONCE_LEN]);
        self.aead
            .decrypt(nonce, &ciphertext[1 + NONCE_LEN..])
            .map_err(|_| SecretError::Decrypt)
    }
}

#[cfg(unix)]
fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let cipher = Cipher::from_key(&[7u8; 32]);
        let sealed = cipher
            .encrypt(b"{\"password\":\"hunter2\"}")
            .expect("encrypt");
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(
            cipher.decrypt(&sealed).expect("decrypt"),
            b"{\"password\":\"hunter2\"}"
        );
    }

    #[test]
    fn nonces_differ_between_encryptions() {
        let cipher = Cipher::from_key(&[1u8; 32]);
        assert_ne!(
            cipher.encrypt(b"same").expect("encrypt"),
            cipher.encrypt(b"same").expect("encrypt")
        );
    }

    #[test]
    fn wrong_key_fails() {
        let sealed = Cipher::from_key(&[1u8; 32]).encrypt(b"x").expect("encrypt");
        assert!(matches!(
            Cipher::from_key(&[2u8; 32]).decrypt(&sealed),
            Err(SecretError::Decrypt)
        ));
        assert!(Cipher::from_key(&[1u8; 32]).decrypt(&sealed[..10]).is_err());
    }

    #[test]
    fn base64_keys_are_validated() {
        assert!(Cipher::from_base64(&Cipher::generate_base64()).is_ok());
        assert!(matches!(
            Cipher::from_base64("not base64!!"),
            Err(SecretError::InvalidKey(_))
        ));
        assert!(matches!(
            Cipher::from_base64("c2hvcnQ="),
            Err(SecretError::InvalidKey(_))
        ));
    }

    #[test]
    fn key_file_is_generated_once_with_private_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret.key");
        let first = Cipher::load_or_generate(&path).expect("generate");
        let sealed = first.encrypt(b"value").expect("encrypt");
        let second = Cipher::load_or_generate(&path).expect("load");
        assert_eq!(second.decrypt(&sealed).expect("decrypt"), b"value");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path)
                .expect("metadata")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
