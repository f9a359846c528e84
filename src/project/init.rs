//! `easel init`: a new project folder with a commented project.toml.

use std::fs;
use std::path::Path;

use super::{PROJECT_FILE, Project, ProjectError, folder_name};
use crate::fsutil::atomic_write;

/// The commented project.toml that `easel init` writes. Every value in it is
/// the default, so the comments double as the reference for each key.
const TEMPLATE: &str = include_str!("template.toml");

/// The captions' vocabulary, beside project.toml.
pub const VOCABULARY_FILE: &str = "vocabulary.toml";

/// The commented vocabulary.toml `easel init` writes: every setting at its
/// default, no rules yet (the captions module reads it).
pub const VOCABULARY_TEMPLATE: &str = include_str!("vocabulary_template.toml");

/// The template with the project's name and trigger word filled in.
pub fn template(name: &str, trigger: &str) -> String {
    let quote = |s: &str| toml::Value::String(s.to_string()).to_string();
    TEMPLATE.replacen("\"@NAME@\"", &quote(name), 1).replacen("\"@TRIGGER@\"", &quote(trigger), 1)
}

/// Creates the project folder with `project.toml`, `vocabulary.toml`,
/// `dataset/`, `runs/` and `cache/`. Refuses to touch a folder that already has a project.toml.
pub fn init(dir: &Path, name: Option<&str>, trigger: &str) -> Result<Project, ProjectError> {
    let file = dir.join(PROJECT_FILE);
    if file.exists() {
        return Err(ProjectError::AlreadyExists { file });
    }
    let folder_name = folder_name(dir);
    let name = name.unwrap_or(&folder_name);
    for sub in ["dataset", "runs", "cache"] {
        let path = dir.join(sub);
        fs::create_dir_all(&path).map_err(|source| ProjectError::Write { path, source })?;
    }
    atomic_write(&file, template(name, trigger).as_bytes())
        .map_err(|source| ProjectError::Write { path: file.clone(), source })?;
    let vocabulary = dir.join(VOCABULARY_FILE);
    if !vocabulary.exists() {
        atomic_write(&vocabulary, VOCABULARY_TEMPLATE.as_bytes())
            .map_err(|source| ProjectError::Write { path: vocabulary, source })?;
    }
    Project::open(dir)
}
