//! A project: a folder with `project.toml`, the dataset, runs and caches.

mod auto_captions;
mod config;
mod error;
mod evaluate;
mod init;
pub mod locate;

use std::fs;
use std::path::{Path, PathBuf};

pub use auto_captions::{AutoCaptionConfig, HOW_TO_GET_A_MODEL};
pub use config::{
    BaseModel, Invalid, LoraConfig, LoraTargets, LrSchedule, ModelConfig, ModelFamily, Precision, ProjectConfig,
    SamplePrompt, ScanConfig, TrainConfig,
};
pub use error::{ConfigError, ProjectError};
pub use evaluate::{CheckpointSet, Checkpoints, EvalPrompt, EvaluateConfig, PromptKind};
pub use init::{VOCABULARY_FILE, VOCABULARY_TEMPLATE, init, template};

use crate::fsutil::atomic_write;

pub const PROJECT_FILE: &str = "project.toml";

/// File extensions read as images in the dataset folder (compared
/// case-insensitively); a caption extension must not be one of them.
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff"];

/// An opened project: where it lives and what its project.toml says.
#[derive(Debug, Clone, PartialEq)]
pub struct Project {
    pub root: PathBuf,
    pub config: ProjectConfig,
    /// project.toml as read, to point errors found later at the right line.
    pub source: String,
}

impl Project {
    /// Reads and validates `dir/project.toml`.
    pub fn open(dir: &Path) -> Result<Self, ProjectError> {
        let file = dir.join(PROJECT_FILE);
        if !file.is_file() {
            return Err(ProjectError::NotAProject { dir: dir.to_path_buf() });
        }
        let text =
            fs::read_to_string(&file).map_err(|source| ProjectError::Unreadable { file: file.clone(), source })?;
        let config = parse(&file, &text).map_err(ProjectError::Config)?;
        Ok(Self { root: dir.to_path_buf(), config, source: text })
    }

    /// project.toml read again: `None` when it holds what was read before,
    /// the project as it now reads when it changed, or what is wrong with it.
    pub fn reread(&self) -> Result<Option<Self>, ProjectError> {
        let file = self.config_path();
        let text = match fs::read_to_string(&file) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(ProjectError::NotAProject { dir: self.root.clone() });
            }
            Err(source) => return Err(ProjectError::Unreadable { file, source }),
        };
        if text == self.source {
            return Ok(None);
        }
        let config = parse(&file, &text).map_err(ProjectError::Config)?;
        Ok(Some(Self { root: self.root.clone(), config, source: text }))
    }

    /// The configured name, else the folder's name.
    pub fn name(&self) -> String {
        if let Some(name) = &self.config.name {
            return name.clone();
        }
        folder_name(&self.root)
    }

    pub fn config_path(&self) -> PathBuf {
        self.root.join(PROJECT_FILE)
    }

    pub fn dataset_dir(&self) -> PathBuf {
        self.root.join(&self.config.dataset)
    }

    pub fn runs_dir(&self) -> PathBuf {
        self.root.join("runs")
    }

    /// Derived data (latents, scan results, the built-in model) that can always be rebuilt.
    pub fn cache_dir(&self) -> PathBuf {
        self.root.join("cache")
    }

    /// Where `base` (this project's, or a run's frozen one) is on disk: the
    /// built-in model is written into the project's cache on first use.
    pub fn base_model_path(&self, base: &BaseModel) -> anyhow::Result<PathBuf> {
        base.resolve(&self.root, &self.cache_dir())
    }

    /// Stores the theme choice in project.toml, changing only the `theme` line
    /// so that the user's comments and layout survive. The file is re-read
    /// first, so edits made by hand since the project was opened are kept.
    pub fn save_theme(&mut self, theme: &str) -> Result<(), ProjectError> {
        let file = self.config_path();
        let text =
            fs::read_to_string(&file).map_err(|source| ProjectError::Unreadable { file: file.clone(), source })?;
        // A hand edit since opening may have broken the file: say so rather than guess.
        parse(&file, &text).map_err(ProjectError::Config)?;
        let updated = set_value(&text, None, "theme", &toml::Value::String(theme.to_string()));
        let config = parse(&file, &updated).map_err(ProjectError::Config)?;
        atomic_write(&file, updated.as_bytes()).map_err(|source| ProjectError::Write { path: file.clone(), source })?;
        self.config = config;
        self.source = updated;
        Ok(())
    }

    /// An error about the value at `key` of project.toml, located in the file.
    pub fn config_error(&self, key: &str, message: String) -> ConfigError {
        let entries = locate::key_entries(&self.source).unwrap_or_default();
        ConfigError::at_key(&self.config_path(), &self.source, &entries, key, message)
    }
}

/// The name of the folder `dir` points at (also for `.`), the default project name.
fn folder_name(dir: &Path) -> String {
    let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    absolute.file_name().map_or_else(|| "project".to_string(), |n| n.to_string_lossy().into_owned())
}

/// Parses and validates project.toml text; `file` is only used to name it in errors.
pub fn parse(file: &Path, text: &str) -> Result<ProjectConfig, ConfigError> {
    let config: ProjectConfig = toml::from_str(text).map_err(|e| ConfigError::from_toml(file, text, &e))?;
    if let Err(Invalid { key, message }) = config.validate() {
        let entries = locate::key_entries(text).unwrap_or_default();
        return Err(ConfigError::at_key(file, text, &entries, &key, message));
    }
    Ok(config)
}

/// TOML `text` (project.toml, vocabulary.toml) with the value of `key`, at
/// the top level or in `table`, set to `value`, changing only that value so
/// comments and layout survive. A key not there yet is added right under its
/// table's header (the table is added at the end when missing), quoted when
/// it is not a bare key ("running shoe").
pub fn set_value(text: &str, table: Option<&str>, key: &str, value: &toml::Value) -> String {
    let entries = locate::key_entries(text).unwrap_or_default();
    let path = table.map_or_else(|| key.to_string(), |table| format!("{table}.{key}"));
    if let Some(entry) = entries.iter().find(|e| e.path == path) {
        return format!("{}{value}{}", &text[..entry.value_span.start], &text[entry.value_span.end..]);
    }
    let bare = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = if bare { key.to_string() } else { toml::Value::String(key.to_string()).to_string() };
    let Some(table) = table else {
        return insert_top_level_line(text, &format!("{key} = {value}"));
    };
    match entries.iter().find(|e| e.path == table) {
        Some(header) => {
            let line_end = text[header.key_span.end..].find('\n').map_or(text.len(), |i| header.key_span.end + i + 1);
            let newline = if line_end == text.len() && !text.ends_with('\n') { "\n" } else { "" };
            format!("{}{newline}{key} = {value}\n{}", &text[..line_end], &text[line_end..])
        }
        None => {
            let separator = match () {
                _ if text.is_empty() => "",
                _ if text.ends_with('\n') => "\n",
                _ => "\n\n",
            };
            format!("{text}{separator}[{table}]\n{key} = {value}\n")
        }
    }
}

/// Adds `line` among the top-level keys: before the first table header, so
/// that it does not land inside a table.
fn insert_top_level_line(text: &str, line: &str) -> String {
    let mut offset = 0;
    for current in text.split_inclusive('\n') {
        if current.trim_start().starts_with('[') {
            return format!("{}{line}\n\n{}", &text[..offset], &text[offset..]);
        }
        offset += current.len();
    }
    let separator = if text.is_empty() || text.ends_with('\n') { "" } else { "\n" };
    format!("{text}{separator}{line}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserts_before_the_first_table() {
        let text = "# comment\nname = \"x\"\n\n[train]\nsteps = 1\n";
        let out = insert_top_level_line(text, "theme = \"light\"");
        assert_eq!(out, "# comment\nname = \"x\"\n\ntheme = \"light\"\n\n[train]\nsteps = 1\n");
        assert_eq!(insert_top_level_line("a = 1", "b = 2"), "a = 1\nb = 2\n");
    }

    #[test]
    fn a_value_is_set_where_it_is_or_added_to_its_table() {
        let steps = toml::Value::Integer(300);
        let text = "name = \"x\"\n\n[train]\n# how long\nsteps = 200 # comment kept\n";
        assert_eq!(set_value(text, Some("train"), "steps", &steps), text.replace("200", "300"));
        let text = "name = \"x\"\n[train] # header comment\nseed = 1\n";
        assert_eq!(
            set_value(text, Some("train"), "steps", &steps),
            "name = \"x\"\n[train] # header comment\nsteps = 300\nseed = 1\n"
        );
        assert_eq!(set_value("name = \"x\"", Some("train"), "steps", &steps), "name = \"x\"\n\n[train]\nsteps = 300\n");
        for text in ["name = \"x\"\n[train]\nseed = 1\n", "[train]", ""] {
            let set = set_value(text, Some("train"), "steps", &steps);
            assert_eq!(parse(Path::new("p.toml"), &set).unwrap().train.steps, 300, "{set:?}");
        }
    }
}
