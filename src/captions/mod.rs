//! Captions: the sidecar text that says what each image shows. The caption
//! model (`text`), the project vocabulary (`vocabulary`), normalization,
//! lint, suggestions, the journaled store with undo (`journal`), and
//! import/export of other tools' layouts (`exchange`).

pub mod auto;
pub mod auto_command;
pub mod command;
pub mod drafts;
pub mod exchange;
pub mod journal;
pub mod lint;
pub mod normalize;
pub mod suggest;
pub mod text;
pub mod trigger;
pub mod vocabulary;

pub use trigger::mentions_trigger;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use journal::{Change, JournalError, read_text};
use lint::{Lint, Linter};
use normalize::{Rules, normalize};
use suggest::Suggestion;
use vocabulary::Vocabulary;

use crate::model::tokenizer::{ClipTokenizer, Padding};
use crate::project::Project;

/// What caption work needs of a project: where the captions are, the
/// vocabulary and its rules, and the CLIP tokenizer lint counts with.
#[derive(Debug)]
pub struct CaptionContext {
    pub dataset: PathBuf,
    pub extension: String,
    pub trigger: String,
    pub vocabulary: Vocabulary,
    pub rules: Rules,
    pub tokenizer: ClipTokenizer,
}

impl CaptionContext {
    /// A linter for one caption at a time (the editor's live findings).
    pub fn linter(&self) -> Linter<'_> {
        Linter::new(&self.rules, &self.vocabulary, &self.tokenizer)
    }

    pub fn open(project: &Project) -> anyhow::Result<Self> {
        let vocabulary = Vocabulary::load(&project.root)?;
        let trigger = project.config.trigger.clone();
        Ok(Self {
            dataset: project.dataset_dir(),
            extension: project.config.caption_extension.clone(),
            rules: Rules::new(&vocabulary, &trigger)?,
            trigger,
            vocabulary,
            tokenizer: ClipTokenizer::shipped(Padding::EndOfText),
        })
    }

    pub fn captions(&self) -> Vec<Caption> {
        read_all(&self.dataset, &self.extension)
    }

    /// Proposed alias rules from these captions.
    pub fn suggestions(&self, captions: &[Caption]) -> Vec<Suggestion> {
        suggest::suggestions(captions.iter().filter_map(Caption::text), &self.vocabulary, &self.trigger)
    }

    /// Lint findings per caption, dataset-level ones included.
    pub fn lint(&self, captions: &[Caption]) -> Vec<Vec<Lint>> {
        self.lint_with(captions, &self.suggestions(captions))
    }

    /// `lint` with the suggestions already made.
    pub fn lint_with(&self, captions: &[Caption], suggestions: &[Suggestion]) -> Vec<Vec<Lint>> {
        // A drafts file that does not parse is named by `captions drafts` and
        // by training; lint still lints the captions themselves. The captions
        // are read already: only the drafts file is.
        let drafted: HashSet<PathBuf> = match drafts::Drafts::read(&self.dataset) {
            Ok(stored) => captions
                .iter()
                .filter(|caption| stored.get(&caption.image).is_some_and(|draft| draft.awaits_review(caption.text())))
                .map(|caption| caption.image.clone())
                .collect(),
            Err(_) => HashSet::new(),
        };
        lint_all(captions, || self.linter(), suggestions, &drafted)
    }
}

/// What the Captions pane shows about the captions, computed off the UI thread.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CaptionReport {
    /// Lint findings by image (relative path); images without findings are absent.
    pub findings: std::collections::HashMap<PathBuf, Vec<Lint>>,
    pub suggestions: Vec<Suggestion>,
    pub terms: Vec<suggest::TermCount>,
    /// What normalization would change.
    pub normalization: Vec<Change>,
    /// Canonical terms of the vocabulary, for completion.
    pub vocabulary_terms: Vec<String>,
    /// Why vocabulary.toml could not be used, if it could not.
    pub vocabulary_error: Option<String>,
    /// Labels of the journal's next undo and redo.
    pub undo: Option<String>,
    pub redo: Option<String>,
    /// The drafts awaiting review, by image (images still in the dataset only).
    pub drafts: std::collections::BTreeMap<PathBuf, QueuedDraft>,
    /// Why the drafts file could not be read, if it could not.
    pub drafts_error: Option<String>,
    /// When the drafts file was last changed, as read (a run from the
    /// command line shows up with the next read of the files).
    pub drafts_changed: Option<std::time::SystemTime>,
}

/// A draft awaiting review, with what a person needs to judge it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedDraft {
    pub draft: drafts::Draft,
    /// What the image's caption file holds now.
    pub caption: Option<String>,
    /// The draft's own lint findings.
    pub findings: Vec<Lint>,
    /// From the caption to the draft, word by word; empty without a caption.
    pub diff: Vec<text::DiffPiece>,
}

impl QueuedDraft {
    /// The current caption when it says something (a blank one is no caption).
    pub fn caption_text(&self) -> Option<&str> {
        self.caption.as_deref().filter(|c| !c.trim().is_empty())
    }

    /// Whether the draft is the only text its image has: training leaves
    /// the image out until it is accepted.
    pub fn is_only_text(&self) -> bool {
        self.caption_text().is_none()
    }

    /// Free of lint findings, and for an image without a caption: what
    /// accepting all at once takes; a draft that would replace a person's
    /// caption is accepted one at a time.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty() && self.is_only_text()
    }
}

impl CaptionReport {
    pub fn build(project: &Project) -> (Self, Option<CaptionContext>) {
        let journal = journal::Journal::open(&project.dataset_dir());
        let (undo, redo) = (journal.undo_label().map(String::from), journal.redo_label().map(String::from));
        let context = match CaptionContext::open(project) {
            Ok(context) => context,
            Err(error) => {
                let report = Self { vocabulary_error: Some(format!("{error:#}")), undo, redo, ..Self::default() };
                return (report, None);
            }
        };
        // Looked at before the drafts are read: a change in between is read again next time.
        let drafts_changed = drafts_changed(&context.dataset);
        let captions = context.captions();
        let suggestions = context.suggestions(&captions);
        let findings = context
            .lint_with(&captions, &suggestions)
            .into_iter()
            .zip(&captions)
            .filter(|(found, _)| !found.is_empty())
            .map(|(found, caption)| (caption.image.clone(), found))
            .collect();
        let (drafts, drafts_error) = match queue(&context, &captions) {
            Ok(drafts) => (drafts, None),
            Err(error) => (Default::default(), Some(format!("{error:#}"))),
        };
        let report = Self {
            findings,
            suggestions,
            terms: suggest::frequencies(captions.iter().filter_map(Caption::text), &context.trigger),
            normalization: normalization(&captions, &context.rules),
            vocabulary_terms: context.vocabulary.terms.keys().cloned().collect(),
            vocabulary_error: None,
            undo,
            redo,
            drafts,
            drafts_error,
            drafts_changed,
        };
        (report, Some(context))
    }

    /// Images left out of training because their only text is a draft awaiting review.
    pub fn uncaptioned_with_drafts(&self) -> usize {
        self.drafts.values().filter(|queued| queued.is_only_text()).count()
    }
}

/// When the dataset's drafts file was last changed (`None`: there is none).
pub fn drafts_changed(dataset: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(dataset.join(drafts::FILE)).and_then(|m| m.modified()).ok()
}

/// The drafts awaiting review, in image order, each linted and diffed
/// against its image's caption: the queue the command line and the pane show.
pub fn review_queue(context: &CaptionContext) -> anyhow::Result<Vec<QueuedDraft>> {
    let stored = drafts::Drafts::read(&context.dataset)?;
    let mut linter = context.linter();
    Ok(drafts::awaiting_review(&context.dataset, &context.extension, &stored)
        .into_iter()
        .map(|(draft, caption)| {
            let diff = match caption.as_deref().filter(|c| !c.trim().is_empty()) {
                Some(caption) => text::word_diff(caption, &draft.text),
                None => Vec::new(),
            };
            let findings = linter.lint(&draft.text);
            QueuedDraft { draft, caption, findings, diff }
        })
        .collect())
}

/// The review queue of `captions`' images (drafts of images gone from the
/// dataset left out), by image.
fn queue(
    context: &CaptionContext,
    captions: &[Caption],
) -> anyhow::Result<std::collections::BTreeMap<PathBuf, QueuedDraft>> {
    let images: HashSet<&Path> = captions.iter().map(|c| c.image.as_path()).collect();
    Ok(review_queue(context)?
        .into_iter()
        .filter(|queued| images.contains(queued.draft.image.as_path()))
        .map(|queued| (queued.draft.image.clone(), queued))
        .collect())
}

/// One image's caption as read from disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caption {
    /// The image, relative to the dataset folder.
    pub image: PathBuf,
    /// Its caption file, relative to the dataset folder.
    pub file: PathBuf,
    /// `Ok(None)`: no caption file; `Err`: not readable as UTF-8 text.
    pub text: Result<Option<String>, String>,
}

impl Caption {
    pub fn text(&self) -> Option<&str> {
        self.text.as_ref().ok().and_then(|t| t.as_deref())
    }
}

/// Every image of the dataset (rejected ones aside) with its caption.
pub fn read_all(dataset: &Path, extension: &str) -> Vec<Caption> {
    crate::dataset::scan::image_files(dataset)
        .into_iter()
        .map(|image| {
            let file = image.with_extension(extension);
            let text = read_text(&dataset.join(&file)).map_err(|e| match e {
                JournalError::Io(message) => message,
                other => other.to_string(),
            });
            Caption { image, file, text }
        })
        .collect()
}

/// The changes normalization would make, one per caption it changes.
pub fn normalization(captions: &[Caption], rules: &Rules) -> Vec<Change> {
    use rayon::prelude::*;
    captions
        .par_iter()
        .filter_map(|caption| {
            let text = caption.text()?;
            let normalized = normalize(text, rules);
            (normalized != text).then(|| Change {
                path: caption.file.clone(),
                before: Some(text.to_string()),
                after: Some(normalized),
            })
        })
        .collect()
}

/// Lint findings per caption (same order as `captions`), including the
/// dataset-level ones: a rare term used where the rest say another. An
/// uncaptioned image in `drafted` (its draft awaits review) is reported as
/// such rather than as missing or empty. In parallel, each thread with its
/// own linter (and token cache).
pub fn lint_all<'a>(
    captions: &[Caption],
    linter: impl Fn() -> Linter<'a> + Sync + Send,
    suggestions: &[Suggestion],
    drafted: &HashSet<PathBuf>,
) -> Vec<Vec<Lint>> {
    use rayon::prelude::*;
    captions
        .par_iter()
        .map_init(linter, |linter, caption| match &caption.text {
            Err(reason) => vec![Lint::Unreadable { reason: reason.clone() }],
            Ok(text) if text.as_deref().is_none_or(|t| t.trim().is_empty()) && drafted.contains(&caption.image) => {
                vec![Lint::DraftUnreviewed]
            }
            Ok(None) => vec![Lint::Missing],
            Ok(Some(text)) => lint_caption(linter, text, suggestions),
        })
        .collect()
}

/// One caption's findings, the dataset-level ones from `suggestions`
/// included: what the list shows and what the editor shows as it is typed.
pub fn lint_caption(linter: &mut Linter, text: &str, suggestions: &[Suggestion]) -> Vec<Lint> {
    let mut findings = linter.lint(text);
    if !text.trim().is_empty() {
        let words = trigger::words_outside_trigger(text, linter.trigger());
        for suggestion in suggestions.iter().filter(|s| words.iter().any(|w| w.lower == s.alias.as_str())) {
            findings.push(Lint::Inconsistent { found: suggestion.alias.clone(), usual: suggestion.canonical.clone() });
        }
    }
    findings
}
