//! Where a client command finds its server and token: the `--url` and
//! `--token` flags, else `JOBHOST_URL` and `JOBHOST_TOKEN`, else the file
//! `jobhost login` writes (`$XDG_CONFIG_HOME/jobhost/client.toml`, by
//! default `~/.config/jobhost/client.toml`, readable by its owner only).

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The server a client talks to, and as whom.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Base URL of the server, such as `http://127.0.0.1:8080`.
    pub url: Option<String>,
    /// The token's secret.
    pub token: Option<String>,
}

/// The server when nothing says otherwise: `jobhost serve`'s default.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

impl Settings {
    /// The file `jobhost login` writes.
    pub fn path() -> anyhow::Result<PathBuf> {
        let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|dir| !dir.is_empty()) {
            Some(dir) => PathBuf::from(dir),
            None => {
                PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".config")
            }
        };
        Ok(base.join("jobhost").join("client.toml"))
    }

    /// The saved settings, or none if nothing was saved.
    pub fn load() -> anyhow::Result<Settings> {
        let path = Self::path()?;
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                toml::from_str(&text).with_context(|| format!("reading {}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Settings::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Saves these settings for later commands, readable by the user only
    /// (the file holds a secret). Returns where.
    pub fn save(&self) -> anyhow::Result<PathBuf> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let path = Self::path()?;
        let dir = path.parent().expect("the path has a folder");
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let partial = path.with_extension("toml.partial");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&partial)
            .with_context(|| format!("writing {}", partial.display()))?;
        file.write_all(toml::to_string(self)?.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&partial, &path).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// These settings, each filled from `saved` where it is missing.
    pub fn or(self, saved: Settings) -> Settings {
        Settings { url: self.url.or(saved.url), token: self.token.or(saved.token) }
    }

    /// The URL without a trailing `/`, checked to be `http://` (this build
    /// has no TLS: reach a remote host through a TLS proxy or tunnel).
    pub fn base_url(&self) -> anyhow::Result<String> {
        let url = self.url.as_deref().unwrap_or(DEFAULT_URL).trim_end_matches('/');
        if !url.starts_with("http://") {
            bail!("the server URL {url:?} must start with http:// (this client has no TLS)");
        }
        Ok(url.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_saved_file_and_urls_are_checked() {
        let flags = Settings { url: Some("http://a:1/".into()), token: None };
        let saved = Settings { url: Some("http://b:2".into()), token: Some("t".into()) };
        let settings = flags.or(saved);
        assert_eq!(settings.base_url().unwrap(), "http://a:1");
        assert_eq!(settings.token.as_deref(), Some("t"));
        let bad = Settings { url: Some("localhost:8080".into()), token: None };
        assert!(bad.base_url().unwrap_err().to_string().contains("http://"));
        assert_eq!(Settings::default().base_url().unwrap(), DEFAULT_URL);
    }
}
