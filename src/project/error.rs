//! Errors about a project file, always naming the file, the line and the key.

use std::fmt;
use std::path::{Path, PathBuf};

use super::locate::{self, KeyEntry};

#[derive(Debug)]
pub enum ProjectError {
    /// The folder has no project.toml.
    NotAProject { dir: PathBuf },
    /// project.toml could not be read (permissions, not UTF-8, …).
    Unreadable { file: PathBuf, source: std::io::Error },
    /// project.toml is malformed or holds a bad value.
    Config(ConfigError),
    /// `easel init` was pointed at a folder that is already a project.
    AlreadyExists { file: PathBuf },
    /// Writing a project file or folder failed.
    Write { path: PathBuf, source: std::io::Error },
}

impl fmt::Display for ProjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAProject { dir } => write!(
                f,
                "{} holds no project.toml: create one with `easel init {}`, or give the project folder",
                dir.display(),
                dir.display()
            ),
            Self::Unreadable { file, source } => write!(f, "cannot read {}: {source}", file.display()),
            Self::Config(error) => error.fmt(f),
            Self::AlreadyExists { file } => {
                write!(f, "{} already exists: not overwriting an existing project", file.display())
            }
            Self::Write { path, source } => write!(f, "cannot write {}: {source}", path.display()),
        }
    }
}

impl std::error::Error for ProjectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Unreadable { source, .. } | Self::Write { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A malformed project file or a bad value in it, located.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    /// The dotted key the problem is about, when there is one (a syntax error may have none).
    pub key: Option<String>,
    pub message: String,
}

impl ConfigError {
    /// Locates a TOML parse or type error reported by the `toml` crate.
    pub fn from_toml(file: &Path, text: &str, error: &toml::de::Error) -> Self {
        let span = error.span().unwrap_or(0..0);
        let key = locate::key_entries(text).and_then(|entries| locate::key_at(&entries, &span));
        let (line, column) = locate::line_column(text, span.start);
        Self { file: file.to_path_buf(), line, column, key, message: error.message().trim().to_string() }
    }

    /// Locates a problem found after parsing, at the key it concerns.
    pub fn at_key(file: &Path, text: &str, entries: &[KeyEntry], key: &str, message: String) -> Self {
        let offset = locate::span_of(entries, key).map_or(0, |span| span.start);
        let (line, column) = locate::line_column(text, offset);
        Self { file: file.to_path_buf(), line, column, key: Some(key.to_string()), message }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.column)?;
        if let Some(key) = &self.key {
            write!(f, "key `{key}`: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}
