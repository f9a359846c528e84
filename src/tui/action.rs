//! Everything a key can ask the workbench to do. Keymaps name these actions
//! (the enum is serde-deserialisable), panes and dialogs handle them.

use serde::{Deserialize, Serialize};

/// The four panes, in tab order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaneId {
    Dataset,
    Captions,
    Train,
    Samples,
    Evaluate,
}

impl PaneId {
    pub const ALL: [PaneId; 5] = [PaneId::Dataset, PaneId::Captions, PaneId::Train, PaneId::Samples, PaneId::Evaluate];

    pub fn title(self) -> &'static str {
        match self {
            Self::Dataset => "Dataset",
            Self::Captions => "Captions",
            Self::Train => "Train",
            Self::Samples => "Samples",
            Self::Evaluate => "Evaluate",
        }
    }

    /// What the pane holds, for the help's pane keys.
    pub fn description(self) -> &'static str {
        match self {
            Self::Dataset => "images and their state",
            Self::Captions => "the caption of each image",
            Self::Train => "settings and runs",
            Self::Samples => "sample prompts and images",
            Self::Evaluate => "evaluation grids and scores",
        }
    }

    pub fn index(self) -> usize {
        Self::ALL.iter().position(|p| *p == self).expect("every pane is in ALL")
    }

    pub fn next(self) -> Self {
        Self::ALL[(self.index() + 1) % Self::ALL.len()]
    }

    pub fn previous(self) -> Self {
        Self::ALL[(self.index() + Self::ALL.len() - 1) % Self::ALL.len()]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Leave, asking first when something is unsaved.
    Quit,
    NextPane,
    PreviousPane,
    ShowPane(PaneId),
    ToggleHelp,
    /// Switch to the next built-in theme (an unsaved change until saved).
    CycleTheme,
    /// Write unsaved changes to the project.
    Save,
    /// Re-read the dataset and runs now instead of at the next refresh tick.
    Refresh,
    Up,
    Down,
    PageUp,
    PageDown,
    First,
    Last,
    /// In the quit dialog: save, then leave.
    SaveAndQuit,
    /// In the quit dialog: leave without saving.
    DiscardAndQuit,
    /// Close the open dialog or overlay.
    Close,
    /// Train pane: start a run with the project's settings.
    StartTraining,
    /// Train pane: pause or resume the running trainer.
    TogglePause,
    /// Train pane: save a checkpoint and end the run.
    StopTraining,
    SampleNow,
    SaveNow,
    /// Train pane: continue the selected run from its last checkpoint.
    ResumeRun,
    /// Loss chart: more or less EMA smoothing.
    SmoothMore,
    SmoothLess,
    ToggleLogScale,
    /// Loss chart: all steps, or only the last N.
    CycleZoom,
    /// Overlay the selected run's curve on the chart (or clear the overlay).
    ToggleCompare,
    /// Samples pane: an earlier or later sampling step of the prompt (Evaluate
    /// pane: checkpoint or scale; comparing checkpoints: the right-hand one).
    EarlierStep,
    LaterStep,
    /// Samples pane: keep this step on the left to compare with others;
    /// checkpoints: mark this one to compare (A, then B).
    MarkStep,
    /// Samples and Dataset panes: the image alone, as large as the pane allows.
    ToggleFullView,
    /// Dataset pane: mark the image kept despite its flags (again: to review).
    KeepImage,
    /// Dataset pane: move the image and its caption to `_rejected/`.
    RejectImage,
    /// Dataset pane: move a rejected image back.
    RestoreImage,
    /// Dataset pane: reject every image of the duplicate group but the sharpest.
    RejectDuplicates,
    /// Dataset pane: the next (previous) image still to review.
    NextToReview,
    PreviousToReview,
    /// Dataset pane: which images the list shows, and in what order.
    CycleFilter,
    CycleSort,
    /// Captions pane: open the selected caption in the editor.
    EditCaption,
    /// Captions pane: the next (previous) image, saving an open edit first.
    NextImage,
    PreviousImage,
    /// Captions pane: the next image without a usable caption, or with a lint finding.
    NextUncaptioned,
    NextWithFinding,
    /// Captions pane: review what normalization would change, caption by caption.
    ReviewNormalization,
    /// Captions pane: the vocabulary panel (term frequencies, suggested rules).
    ToggleVocabulary,
    /// Captions pane: write the selected suggested rule into vocabulary.toml; move through them.
    AcceptSuggestion,
    NextSuggestion,
    PreviousSuggestion,
    /// Captions pane: add, remove or replace a tag in every listed caption.
    EditTags,
    /// Captions pane: undo or redo the last caption edit (journaled, survives restarts).
    UndoCaption,
    RedoCaption,
    /// Caption editor: save when changed, and close.
    CloseEditor,
    /// Caption editor: save now and keep editing.
    SaveCaption,
    /// Caption editor: complete the word being typed.
    CompleteWord,
    /// Normalization review: leave the selected change out.
    SkipChange,
    /// Normalization review: apply every change still listed, or the selected one.
    ApplyAll,
    ApplyChange,
    /// Tag prompt: apply the typed edit to the listed captions.
    ApplyTagEdit,
    /// Caption changed elsewhere: write the typed text over it, or keep the file's;
    /// export: replace the file already at the destination.
    Overwrite,
    KeepTheirs,
    /// Captions pane: list the drafts awaiting review; the next or previous one.
    ShowDrafts,
    NextDraft,
    PreviousDraft,
    /// Captions pane: write the selected draft as the caption; edit it first
    /// (saving accepts); reject it (never proposed again).
    AcceptDraft,
    EditDraft,
    RejectDraft,
    /// Captions pane: accept every draft without lint findings, as one undoable edit.
    AcceptCleanDrafts,
    /// Captions pane: draft captions with the model in the background, or stop that.
    StartAutoCaptions,
    StopAutoCaptions,
    /// Captioning scope question: draft for uncaptioned images only, or for all.
    DraftMissing,
    DraftAll,
    /// A question's yes (a prompt's Enter).
    Confirm,
    /// Evaluate pane: render (the rest of) the shown run's evaluation grid, or stop it.
    StartEvaluation,
    StopEvaluation,
    /// Train pane: the selected run's checkpoints.
    OpenCheckpoints,
    /// Checkpoints: open the export prompt for the selected one; in the prompt, export.
    ExportCheckpoint,
    /// Checkpoints: train on from the selected one in a new run.
    RollBack,
    /// Checkpoints: the two marked checkpoints' samples side by side.
    CompareSamples,
    /// Export prompt: the next or previous text field.
    NextField,
    PreviousField,
    /// Export prompt: kohya or PEFT; keep or strip the metadata.
    ToggleFormat,
    ToggleStripMetadata,
}
