//! What every pane reads: the project, its files as last read in the
//! background, the theme, image drawing, and which runs are shown.

use std::path::PathBuf;

use crate::captions::CaptionReport;
use crate::dataset::Inventory;
use crate::project::Project;
use crate::train::{RunMetrics, RunSummary};

use super::preview::Previews;
use super::theme::Theme;

/// What the workbench knows about the project's files, re-read in the background.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProjectFiles {
    pub inventory: Inventory,
    pub runs: Vec<RunSummary>,
    /// The shown run's metrics, and the compared run's.
    pub metrics: Option<RunMetrics>,
    pub compare_metrics: Option<RunMetrics>,
    /// The folders those metrics were read from (they may no longer be the shown runs').
    pub metrics_of: (Option<PathBuf>, Option<PathBuf>),
    /// Lint, suggestions and normalization of the captions; `None` in a
    /// refresh that found nothing changed (the previous report stands).
    pub captions: Option<CaptionReport>,
    pub caption_context: Option<SharedContext>,
    /// project.toml as this read found it, when it changed and is valid
    /// (the app takes it up, and the read used it).
    pub project: Option<Box<Project>>,
    /// What is wrong with project.toml as this read found it, located; the
    /// workbench keeps the last valid settings meanwhile.
    pub project_error: Option<String>,
    /// vocabulary.toml's text as read (`None`: there is none), so that an
    /// edit made elsewhere has the captions linted again.
    pub vocabulary_text: Option<String>,
}

/// The caption rules and tokenizer, shared with the refresh that made them.
#[derive(Debug, Clone)]
pub struct SharedContext(pub std::sync::Arc<crate::captions::CaptionContext>);

impl PartialEq for SharedContext {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Success,
    Warning,
    Error,
}

/// The status line's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusMessage {
    pub text: String,
    pub level: Level,
}

impl StatusMessage {
    pub fn new(level: Level, text: impl Into<String>) -> Self {
        Self { text: text.into(), level }
    }
}

pub struct Shared {
    pub project: Project,
    pub files: ProjectFiles,
    /// True until the first background read of the project's files arrives.
    pub loading: bool,
    pub theme: Theme,
    /// How images are drawn (Kitty, Sixel, iTerm2 or half-blocks).
    pub picker: ratatui_image::picker::Picker,
    /// Image previews, decoded in the background, encoded once per size.
    pub previews: Previews,
    /// The run the Train pane shows (the Samples pane follows it), and the
    /// one overlaid on its chart: whose metrics are read.
    pub shown_run: Option<String>,
    pub compare_run: Option<String>,
}

impl Shared {
    pub fn new(project: Project, theme: Theme) -> Self {
        Self {
            project,
            files: ProjectFiles::default(),
            loading: true,
            theme,
            picker: ratatui_image::picker::Picker::halfblocks(),
            previews: Previews::default(),
            shown_run: None,
            compare_run: None,
        }
    }

    /// What is wrong with project.toml or vocabulary.toml as last read, in
    /// one located line; `None` while both are valid. Nothing starts a run
    /// meanwhile: it would record settings the workbench does not show.
    pub fn settings_problem(&self) -> Option<String> {
        let vocabulary = self.files.captions.as_ref().and_then(|report| report.vocabulary_error.as_deref());
        let problem = self.files.project_error.as_deref().or(vocabulary)?;
        // The files are the project's own: named from its folder, the line and the key come sooner.
        let root = format!("{}/", self.project.root.display());
        Some(problem.strip_prefix(&root).unwrap_or(problem).to_string())
    }

    /// The folder of the run with this id, when the run list has it.
    pub fn run_dir(&self, id: Option<&String>) -> Option<PathBuf> {
        let id = id?;
        self.files.runs.iter().find(|run| &run.id == id).map(|run| run.dir.clone())
    }

    /// The folders of the shown and compared runs, whose metrics should be shown.
    pub fn metrics_wanted(&self) -> (Option<PathBuf>, Option<PathBuf>) {
        (self.run_dir(self.shown_run.as_ref()), self.run_dir(self.compare_run.as_ref()))
    }

    /// The sampling steps of the shown run, ascending.
    pub fn sample_steps(&self) -> Vec<u64> {
        let mut steps: Vec<u64> =
            self.files.metrics.iter().flat_map(|m| m.samples.iter().map(|(step, _)| *step)).collect();
        steps.sort_unstable();
        steps.dedup();
        steps
    }

    /// The image of sample prompt `prompt` at `step`, if the shown run wrote one.
    pub fn sample_image(&self, prompt: usize, step: u64) -> Option<PathBuf> {
        let metrics = self.files.metrics.as_ref()?;
        let prefix = format!("{prompt:02}-");
        metrics
            .samples
            .iter()
            .rev()
            .filter(|(s, _)| *s == step)
            .flat_map(|(_, paths)| paths)
            .find(|path| path.file_name().is_some_and(|name| name.to_string_lossy().starts_with(&prefix)))
            .cloned()
    }
}

#[cfg(test)]
impl Shared {
    /// An empty project named "demo", dark theme.
    pub fn for_tests() -> Self {
        let project = Project { root: "demo".into(), config: Default::default(), source: String::new() };
        Self::new(project, Theme::resolve("dark", std::path::Path::new(".")).unwrap())
    }
}
