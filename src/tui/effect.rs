//! What panes and the app ask for beyond their own state: a message, a
//! background job, or leaving. The app keeps the first kind; the job runner
//! carries out the rest (see `jobs`).

use std::path::PathBuf;

use crate::captions::auto::Scope;
use crate::captions::journal::Change;
use crate::dataset::decisions::Decision;
use crate::model::lora_file::LoraFormat;
use crate::train::{Command, Resume};

use super::shared::{Level, StatusMessage};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Show this on the status line.
    Say(StatusMessage),
    /// The Train pane now shows these runs: their metrics are read.
    ShowRuns {
        shown: Option<String>,
        compare: Option<String>,
    },
    /// Leave the workbench.
    Quit,
    /// Re-read the project's files; `captions`: lint the captions again even
    /// when no file changed (the vocabulary or the journal did).
    Refresh {
        captions: bool,
    },
    /// Re-read the shown runs' metrics only.
    ReadMetrics,
    /// Scan the dataset (a scan asked for while one runs follows it).
    Scan,
    /// Decode an image for drawing.
    Preview(PathBuf),
    /// Start training: a new run, or continue one (in its folder, or from a checkpoint in a new run).
    StartTraining {
        resume: Option<Resume>,
    },
    /// Pass a command to the running trainer.
    Trainer(Command),
    /// Carry out a keep/reject/restore.
    Decide(Decision),
    /// Write captions through the journal.
    Caption(CaptionJob),
    /// Write this theme's name to project.toml.
    SaveTheme(String),
    /// Write a checkpoint's LoRA out for other tools.
    Export(ExportRequest),
    /// Read a run's evaluation report (`eval/default/eval.json`).
    ReadEvaluation(PathBuf),
    /// Render and score the run's evaluation grid; `StopEvaluation` ends it after the cell in hand.
    StartEvaluation(PathBuf),
    StopEvaluation,
    /// Draft captions with the model in this folder, in the background;
    /// `StopAutoCaptions` ends the run after the batch in hand.
    StartAutoCaptions {
        model: PathBuf,
        scope: Scope,
    },
    StopAutoCaptions,
}

impl Effect {
    pub fn info(text: impl Into<String>) -> Self {
        Self::Say(StatusMessage::new(Level::Info, text))
    }

    pub fn say(level: Level, text: impl Into<String>) -> Self {
        Self::Say(StatusMessage::new(level, text))
    }
}

/// A caption write, carried out through the caption journal (so each is
/// undoable and never overwrites an edit made elsewhere).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaptionJob {
    /// Writes one caption; `force` takes whatever is on disk as the text replaced.
    Save {
        image: PathBuf,
        file: PathBuf,
        before: Option<String>,
        after: String,
        force: bool,
    },
    /// Writes several captions as one undoable edit.
    Apply {
        label: String,
        changes: Vec<Change>,
    },
    Undo,
    Redo,
    /// Adds `alias` to `canonical` in vocabulary.toml.
    AcceptRule {
        canonical: String,
        alias: String,
    },
    /// Writes drafts as their images' captions, as one undoable edit.
    AcceptDrafts(Vec<DraftAcceptance>),
    /// Marks an image's draft rejected (not proposed again).
    RejectDraft(PathBuf),
}

/// A draft a person accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DraftAcceptance {
    pub image: PathBuf,
    /// The text as the person edited it; `None`: the draft's own.
    pub edited: Option<String>,
    /// The caption the draft was shown against: a caption changed since is
    /// never overwritten (a conflict, as with any caption edit)...
    pub reviewed_against: Option<String>,
    /// ...unless the person chose to write over it.
    pub force: bool,
}

/// A checkpoint's LoRA exported to a file of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportRequest {
    /// The checkpoint's step and LoRA file.
    pub step: u64,
    pub source: PathBuf,
    pub out: PathBuf,
    pub format: LoraFormat,
    /// `modelspec.title` and `ss_output_name`; `None` keeps the file's.
    pub title: Option<String>,
    pub strip_metadata: bool,
    /// Write over a file already at `out`: the user confirmed it.
    pub overwrite: bool,
}
