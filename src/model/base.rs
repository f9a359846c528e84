//! Which base model a project trains on, as project.toml names it
//! (`model.base`), and where that model is on disk.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Where the base model's weights come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseModel {
    /// `builtin:tiny`: the small random-weight SD1.5-family model that trains on a CPU.
    BuiltinTiny,
    /// A diffusers folder or a single-file `.safetensors` checkpoint, relative
    /// to the project folder unless absolute.
    Path(PathBuf),
}

/// Why a `model.base` string names no model Easel can load.
#[derive(Debug, thiserror::Error)]
pub enum BaseModelError {
    #[error("unknown built-in model `builtin:{0}` (available: {tiny})", tiny = BaseModel::BUILTIN_TINY)]
    UnknownBuiltin(String),
    #[error("empty base model: give a diffusers folder, a .safetensors file or {}", BaseModel::BUILTIN_TINY)]
    Empty,
    #[error(
        "`{text}` is a pickle file (.{extension}), which can run arbitrary code when loaded; \
         Easel only loads .safetensors (convert it first, e.g. with diffusers' conversion scripts)"
    )]
    Pickle { text: String, extension: String },
}

impl BaseModel {
    pub const BUILTIN_TINY: &'static str = "builtin:tiny";

    /// Parses the `model.base` string; the error explains what would be accepted.
    pub fn parse(text: &str) -> Result<Self, BaseModelError> {
        if text == Self::BUILTIN_TINY {
            return Ok(Self::BuiltinTiny);
        }
        if let Some(name) = text.strip_prefix("builtin:") {
            return Err(BaseModelError::UnknownBuiltin(name.to_string()));
        }
        if text.trim().is_empty() {
            return Err(BaseModelError::Empty);
        }
        let path = PathBuf::from(text);
        let extension = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        if let Some(extension @ ("ckpt" | "pt" | "pth" | "bin" | "pkl")) = extension.as_deref() {
            return Err(BaseModelError::Pickle { text: text.to_string(), extension: extension.to_string() });
        }
        Ok(Self::Path(path))
    }

    /// The model's folder or file: the built-in model written into `cache`
    /// on first use, or the path against `root` (unless absolute).
    pub fn resolve(&self, root: &Path, cache: &Path) -> anyhow::Result<PathBuf> {
        match self {
            Self::BuiltinTiny => super::builtin::ensure_tiny(cache),
            Self::Path(path) => Ok(root.join(path)),
        }
    }
}

impl fmt::Display for BaseModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BuiltinTiny => f.write_str(Self::BUILTIN_TINY),
            Self::Path(path) => write!(f, "{}", path.display()),
        }
    }
}

impl Serialize for BaseModel {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for BaseModel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}
