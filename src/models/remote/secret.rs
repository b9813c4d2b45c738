//! The API key and everything that keeps it out of sight. [`ApiKey`] prints as `***` in
//! Debug and Display, is never part of a cache key or a cache row, is marked sensitive in the
//! request headers, and [`ApiKey::scrub`] removes it from server bodies before they become
//! error messages (some servers echo the key they rejected).

use std::fmt;
use std::path::Path;

use crate::models::remote::error::ConfigError;

/// A secret credential. The only way to read it is `expose`, which is crate-private and
/// used in exactly one place: building the auth header.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> ApiKey {
        ApiKey(key.into().trim().to_string())
    }

    /// From an environment variable; `None` when unset or empty.
    pub fn from_env(var: &str) -> Option<ApiKey> {
        let key = std::env::var(var).ok()?;
        let key = ApiKey::new(key);
        (!key.0.is_empty()).then_some(key)
    }

    /// From a file the user names: the first non-empty line, trimmed, so a trailing newline
    /// from `echo > key.txt` does not end up in the header.
    pub fn from_file(path: &Path) -> Result<ApiKey, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::KeyFile {
            path: path.to_path_buf(),
            source,
        })?;
        let line = text.lines().map(str::trim).find(|l| !l.is_empty());
        match line {
            Some(line) => Ok(ApiKey(line.to_string())),
            None => Err(ConfigError::EmptyKeyFile(path.to_path_buf())),
        }
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// `text` with every occurrence of the key replaced by `***`.
    pub fn scrub(&self, text: &str) -> String {
        if self.0.is_empty() {
            return text.to_string();
        }
        text.replace(&self.0, "***")
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_and_scrubs() {
        let k = ApiKey::new("sk-test-SECRET123\n");
        assert_eq!(format!("{k}"), "***");
        assert_eq!(format!("{k:?}"), "ApiKey(***)");
        assert_eq!(
            k.scrub("Incorrect API key provided: sk-test-SECRET123."),
            "Incorrect API key provided: ***."
        );
    }

    #[test]
    fn file_key_is_first_nonempty_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key");
        std::fs::write(&p, "\n  sk-abc  \n").unwrap();
        assert_eq!(ApiKey::from_file(&p).unwrap().expose(), "sk-abc");
        std::fs::write(&p, "\n\n").unwrap();
        assert!(matches!(
            ApiKey::from_file(&p),
            Err(ConfigError::EmptyKeyFile(_))
        ));
    }
}
