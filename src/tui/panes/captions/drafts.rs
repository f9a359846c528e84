//! The review queue: a model's drafts, each beside its image with its lint
//! findings and what it changes in the caption; accepted (written as the
//! caption, undoable), edited and then accepted, or rejected, one at a time
//! or every draft without findings at once. A draft decided here leaves the
//! list at once, before its write is done; a read of the files without it,
//! a failed write or an undo ends that.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crossterm::event::KeyCode;

use super::editor::Editor;
use super::modes::Mode;
use super::{CaptionFilter, CaptionsPane};
use crate::captions::QueuedDraft;
use crate::dataset::DatasetEntry;
use crate::tui::action::Action;
use crate::tui::effect::{CaptionJob, DraftAcceptance, Effect};
use crate::tui::keymap::{Binding, Key, ModeKeys};
use crate::tui::shared::{Level, Shared};
use crate::words::counted;

pub(super) const CONFIRM_ACCEPT: &str = "accept clean drafts";

/// The queue's keys while browsing.
pub(super) fn bindings() -> Vec<Binding> {
    vec![
        Binding::new(&[Key::char('D')], Action::ShowDrafts, "list the drafts to review (a model's captions)"),
        Binding::new(&[Key::char(']')], Action::NextDraft, "next draft to review"),
        Binding::new(&[Key::char('[')], Action::PreviousDraft, "previous draft to review"),
        Binding::new(&[Key::char('a')], Action::AcceptDraft, "accept the draft as the caption, then the next"),
        Binding::new(&[Key::char('E')], Action::EditDraft, "edit the draft; saving it accepts it"),
        Binding::new(&[Key::char('x')], Action::RejectDraft, "reject the draft, then the next"),
        Binding::new(&[Key::char('Y')], Action::AcceptCleanDrafts, "accept all drafts without findings (one undo)"),
    ]
}

/// The question before accepting every draft without findings.
pub(super) fn keys() -> ModeKeys {
    ModeKeys::new(
        CONFIRM_ACCEPT,
        "Accepting every draft without findings",
        false,
        vec![
            Binding::new(&[Key::char('y'), Key::plain(KeyCode::Enter)], Action::Confirm, "accept them (one undo)"),
            Binding::new(&[Key::char('n'), Key::plain(KeyCode::Esc)], Action::Close, "keep them waiting"),
        ],
    )
}

/// Accepting a queued draft as it stands.
fn acceptance(queued: &QueuedDraft) -> DraftAcceptance {
    DraftAcceptance {
        image: queued.draft.image.clone(),
        edited: None,
        reviewed_against: queued.caption.clone(),
        force: false,
    }
}

/// The images a draft write decides.
fn decided_by(job: &CaptionJob) -> Vec<&Path> {
    match job {
        CaptionJob::AcceptDrafts(accepted) => accepted.iter().map(|a| a.image.as_path()).collect(),
        CaptionJob::RejectDraft(image) => vec![image.as_path()],
        _ => Vec::new(),
    }
}

/// A row test: images with a draft awaiting review, leaving out those decided here.
fn awaiting(decided: HashSet<PathBuf>) -> impl Fn(&Shared, &DatasetEntry) -> bool {
    move |shared, entry| {
        !decided.contains(&entry.path)
            && shared.files.captions.as_ref().is_some_and(|r| r.drafts.contains_key(&entry.path))
    }
}

impl CaptionsPane {
    /// The image's draft awaiting review, unless decided here already.
    pub(super) fn queued<'a>(&self, shared: &'a Shared, image: &Path) -> Option<&'a QueuedDraft> {
        let queued = shared.files.captions.as_ref()?.drafts.get(image)?;
        (!self.decided.contains(image)).then_some(queued)
    }

    /// The draft the detail shows in place of the caption: in the drafts list, unless editing.
    pub(super) fn shows_draft<'a>(&self, shared: &'a Shared) -> Option<&'a QueuedDraft> {
        let shown = self.filter == CaptionFilter::Drafts && self.editing().is_none();
        shown.then(|| self.selected_draft(shared)).flatten()
    }

    pub(super) fn selected_draft<'a>(&self, shared: &'a Shared) -> Option<&'a QueuedDraft> {
        self.queued(shared, &self.entry(shared)?.path)
    }

    /// How many drafts await review, leaving out those decided here.
    pub(super) fn drafts_waiting(&self, shared: &Shared) -> usize {
        let queue = shared.files.captions.as_ref().map(|r| &r.drafts);
        queue.map_or(0, |q| q.keys().filter(|image| !self.decided.contains(*image)).count())
    }

    /// The queue's keys while browsing.
    pub(super) fn drafts_action(&mut self, action: Action, shared: &Shared) -> Vec<Effect> {
        let no_draft = || vec![Effect::info("No draft for this image (D lists the drafts to review).")];
        match action {
            Action::ShowDrafts => {
                self.filter = CaptionFilter::Drafts;
                self.selection.set(0);
                return vec![Effect::info(match self.drafts_waiting(shared) {
                    0 => "No drafts to review (c drafts captions with a model).",
                    _ => "Drafts to review: a accepts · E edits · x rejects · Y accepts those without findings.",
                })];
            }
            Action::NextDraft | Action::PreviousDraft => {
                let wanted = awaiting(self.decided.clone());
                if !self.move_selection(shared, action == Action::NextDraft, Some(&wanted)) {
                    return vec![Effect::info("No drafts to review in this list (D lists them all).")];
                }
            }
            Action::AcceptDraft => {
                let Some(queued) = self.selected_draft(shared) else { return no_draft() };
                return self.decide(shared, CaptionJob::AcceptDrafts(vec![acceptance(queued)]));
            }
            Action::RejectDraft => {
                let Some(queued) = self.selected_draft(shared) else { return no_draft() };
                return self.decide(shared, CaptionJob::RejectDraft(queued.draft.image.clone()));
            }
            Action::EditDraft => return self.open_draft_editor(shared),
            Action::AcceptCleanDrafts => {
                let queue = shared.files.captions.iter().flat_map(|r| r.drafts.values());
                let clean: Vec<DraftAcceptance> =
                    queue.filter(|q| q.is_clean() && !self.decided.contains(&q.draft.image)).map(acceptance).collect();
                if clean.is_empty() {
                    return vec![Effect::info(
                        "No draft without findings for an uncaptioned image (a accepts one at a time).",
                    )];
                }
                let question = format!(
                    "Accept {} without findings as captions (none replaces a caption)? y accepts, n keeps them.",
                    counted(clean.len(), "draft")
                );
                self.mode = Mode::ConfirmAccept(clean);
                return vec![Effect::say(Level::Warning, question)];
            }
            _ => {}
        }
        Vec::new()
    }

    /// The answer to "accept every draft without findings?".
    pub(super) fn confirm_accept(&mut self, action: Action) -> Vec<Effect> {
        let Mode::ConfirmAccept(accepted) = &self.mode else { return Vec::new() };
        let accepted = accepted.clone();
        match action {
            Action::Confirm => {
                self.mode = Mode::Browse;
                vec![self.write(CaptionJob::AcceptDrafts(accepted))]
            }
            Action::Close => {
                self.mode = Mode::Browse;
                vec![Effect::info("Nothing accepted; the drafts still wait.")]
            }
            _ => Vec::new(),
        }
    }

    /// Opens the editor on the selected image's draft.
    pub(super) fn open_draft_editor(&mut self, shared: &Shared) -> Vec<Effect> {
        let Some(queued) = self.selected_draft(shared) else {
            return vec![Effect::info("No draft for this image (D lists the drafts to review).")];
        };
        let image = queued.draft.image.clone();
        let file = image.with_extension(&shared.project.config.caption_extension);
        let text = queued.draft.text.clone();
        self.mode = Mode::Edit(Editor::on_draft(image, file, queued.caption.clone(), text.clone(), text));
        vec![Effect::info("Editing the draft: Enter or Esc accepts your changes (none: it still waits).")]
    }

    /// A draft decided on the selected image: its write, and the selection
    /// on the next draft (the decided one leaves the drafts list).
    fn decide(&mut self, shared: &Shared, job: CaptionJob) -> Vec<Effect> {
        let current = self.entry(shared).map(|e| e.path.clone());
        self.move_selection(shared, true, Some(&awaiting(self.decided.clone())));
        let next = self.entry(shared).map(|e| e.path.clone()).filter(|next| Some(next) != current.as_ref());
        let write = self.write(job);
        if let Some(next) = next {
            self.select_image(shared, &next);
        }
        vec![write]
    }

    /// A caption write; the drafts it decides leave the queue shown here.
    pub(super) fn write(&mut self, job: CaptionJob) -> Effect {
        self.decided.extend(decided_by(&job).into_iter().map(Path::to_path_buf));
        Effect::Caption(job)
    }

    /// A caption job ended: drafts whose write failed, and every draft after
    /// an undo or redo, are shown as the next read of the files has them.
    pub(super) fn forget_decisions(&mut self, job: &CaptionJob, failed: bool) {
        match job {
            CaptionJob::Undo | CaptionJob::Redo => self.decided.clear(),
            job if failed => decided_by(job).into_iter().for_each(|image| {
                self.decided.remove(image);
            }),
            _ => {}
        }
    }

    /// The files were read again: drafts no longer queued need no hiding.
    pub(super) fn drafts_reread(&mut self, shared: &Shared) {
        let queue = shared.files.captions.as_ref().map(|r| &r.drafts);
        self.decided.retain(|image| queue.is_some_and(|q| q.contains_key(image)));
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::super::tests::app_with_captions;
    use super::*;
    use crate::captions::auto::{AutoProgress, Scope};
    use crate::captions::drafts::{self as store, Draft, Review};
    use crate::tui::app::App;
    use crate::tui::jobs::{self, Done, ReadFiles};
    use crate::tui::pane::Pane;

    /// Reads the files as the workbench's job does (`captions`: linted again even if no file changed).
    fn reread(app: &mut App, captions: bool) {
        let request = ReadFiles::after(&app.shared, captions);
        app.files_loaded(jobs::read_files(request));
    }

    /// Carries out the caption writes and reads the effects ask for, as the job runner would.
    fn run(app: &mut App, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Caption(job) => {
                    let result = jobs::write_captions(&app.shared.project, &job);
                    let more = app.done(Done::Caption(job, result));
                    run(app, more);
                }
                Effect::Refresh { captions } => reread(app, captions),
                _ => {}
            }
        }
    }

    /// `app_with_captions` (a: "zeltmug, a mug", b: none, c: "zeltmug, a cup") with drafts
    /// for b (clean) and c (generic: a finding), read in.
    fn app_with_drafts() -> (tempfile::TempDir, App, std::path::PathBuf) {
        let (dir, mut app) = app_with_captions();
        let dataset = dir.path().join("dataset");
        store::update(&dataset, |drafts| {
            drafts.insert(Draft::pending("b.png", "zeltmug, a red mug on a wooden table"));
            drafts.insert(Draft::pending("c.png", "zeltmug, a mug"));
            Ok(())
        })
        .unwrap();
        reread(&mut app, true);
        (dir, app, dataset)
    }

    fn pane(app: &App) -> &CaptionsPane {
        app.pane()
    }

    fn listed(app: &App) -> Vec<String> {
        let pane = pane(app);
        let entries = &app.shared.files.inventory.entries;
        pane.rows(&app.shared).iter().map(|&i| entries[i].path.display().to_string()).collect()
    }

    #[test]
    fn accept_writes_the_caption_undo_brings_the_draft_back_and_reject_keeps_it_out() {
        let (_dir, mut app, dataset) = app_with_drafts();
        let human = fs::read(dataset.join("a.txt")).unwrap();
        app.apply(Action::ShowDrafts);
        assert_eq!(listed(&app), ["b.png", "c.png"]);
        let queue = &app.shared.files.captions.as_ref().unwrap().drafts;
        assert!(
            queue[Path::new("c.png")].findings.iter().any(|l| matches!(l, crate::captions::lint::Lint::Generic { .. }))
        );
        assert!(!queue[Path::new("c.png")].diff.is_empty(), "diffed against c's caption");

        let accepted = app.handle_key(Key::char('a'));
        assert!(matches!(accepted.as_slice(), [Effect::Caption(CaptionJob::AcceptDrafts(a))] if a.len() == 1));
        assert_eq!(listed(&app), ["c.png"], "the accepted draft leaves the list at once");
        run(&mut app, accepted);
        assert_eq!(fs::read_to_string(dataset.join("b.txt")).unwrap(), "zeltmug, a red mug on a wooden table");
        assert!(app.message.text.contains("Accepted the draft for b.png"), "{}", app.message.text);
        assert_eq!(listed(&app), ["c.png"]);

        let undone = app.handle_key(Key::char('u'));
        run(&mut app, undone);
        assert!(!dataset.join("b.txt").exists(), "undo removes the caption the draft wrote");
        assert_eq!(listed(&app), ["b.png", "c.png"], "and brings the draft back");

        app.apply(Action::Last);
        let rejected = app.handle_key(Key::char('x'));
        run(&mut app, rejected);
        assert_eq!(listed(&app), ["b.png"]);
        assert_eq!(fs::read_to_string(dataset.join("c.txt")).unwrap(), "zeltmug, a cup", "rejecting writes no caption");
        let stored = store::Drafts::read(&dataset).unwrap();
        assert_eq!(stored.get(Path::new("c.png")).unwrap().review, Review::Rejected);
        assert_eq!(fs::read(dataset.join("a.txt")).unwrap(), human, "a human caption without a draft is untouched");
    }

    #[test]
    fn drafts_made_elsewhere_show_up_with_the_next_read_of_the_files() {
        let (_dir, mut app, dataset) = app_with_drafts();
        reread(&mut app, false);
        assert_eq!(app.shared.files.captions.as_ref().unwrap().drafts.len(), 2);
        // `easel captions auto` in another window drafts for a.
        store::update(&dataset, |drafts| {
            drafts.insert(Draft::pending("a.png", "zeltmug, a mug on a shelf"));
            Ok(())
        })
        .unwrap();
        reread(&mut app, false);
        app.apply(Action::ShowDrafts);
        assert_eq!(listed(&app), ["a.png", "b.png", "c.png"]);
    }

    #[test]
    fn accepting_every_draft_without_findings_asks_first_and_is_one_undo() {
        let (_dir, mut app, dataset) = app_with_drafts();
        let before = fs::read(dataset.join("c.txt")).unwrap();
        assert_eq!(app.handle_key(Key::char('Y')), []);
        assert_eq!(pane(&app).mode(), Some(CONFIRM_ACCEPT));
        assert!(app.message.text.contains("Accept 1 draft without"), "{}", app.message.text);
        assert_eq!(app.handle_key(Key::char('n')), []);
        assert!(!dataset.join("b.txt").exists(), "nothing written without a yes");
        app.handle_key(Key::char('Y'));
        let accepted = app.handle_key(Key::char('y'));
        run(&mut app, accepted);
        assert!(dataset.join("b.txt").exists());
        assert_eq!(fs::read(dataset.join("c.txt")).unwrap(), before, "the draft with a finding waits");
        app.apply(Action::ShowDrafts);
        assert_eq!(listed(&app), ["c.png"]);
    }

    #[test]
    fn an_edited_draft_is_accepted_as_edited_and_a_caption_changed_meanwhile_is_a_conflict() {
        let (_dir, mut app, dataset) = app_with_drafts();
        app.apply(Action::ShowDrafts);
        app.apply(Action::Last);
        app.handle_key(Key::char('E'));
        assert_eq!(app.handle_key(Key::plain(KeyCode::Esc)), [], "left unchanged, the draft still waits");
        assert_eq!(listed(&app), ["b.png", "c.png"]);
        app.handle_key(Key::char('E'));
        for c in " on a shelf".chars() {
            app.handle_key(Key::char(c));
        }
        let saved = app.handle_key(Key::plain(KeyCode::Esc));
        let [Effect::Caption(CaptionJob::AcceptDrafts(accepted))] = saved.as_slice() else { panic!("{saved:?}") };
        assert_eq!(accepted[0].edited.as_deref(), Some("zeltmug, a mug on a shelf"));
        // Someone rewrites c's caption before the acceptance is written.
        fs::write(dataset.join("c.txt"), "zeltmug, their words").unwrap();
        run(&mut app, saved);
        assert_eq!(fs::read_to_string(dataset.join("c.txt")).unwrap(), "zeltmug, their words", "never overwritten");
        assert_eq!(pane(&app).mode(), Some(super::super::modes::CONFLICT), "asked, with the edited text kept");
        let overwritten = app.handle_key(Key::char('o'));
        run(&mut app, overwritten);
        assert_eq!(fs::read_to_string(dataset.join("c.txt")).unwrap(), "zeltmug, a mug on a shelf");
        assert!(
            store::Drafts::read(&dataset).unwrap().get(Path::new("c.png")).is_some_and(|d| d.review != Review::Pending)
        );
    }

    #[test]
    fn a_captioning_run_asks_for_the_model_shows_progress_and_reports_failure() {
        let (_dir, mut app, _) = app_with_drafts();
        assert_eq!(app.handle_key(Key::char('c')), []);
        app.handle_key(Key::char('m'));
        assert_eq!(pane(&app).mode(), Some(super::super::auto::MODEL_PROMPT), "project.toml names no model");
        for c in "models/blip".chars() {
            app.handle_key(Key::char(c));
        }
        let started = app.handle_key(Key::plain(KeyCode::Enter));
        assert!(
            started.contains(&Effect::StartAutoCaptions { model: "models/blip".into(), scope: Scope::OnlyMissing })
        );
        assert_eq!(app.running(), ["captioning"]);
        assert!(app.quit_warning().is_some_and(|why| why.contains("captioning run")));
        let progress = AutoProgress { done: 4, total: 10, elapsed: std::time::Duration::from_secs(8) };
        assert_eq!(app.done(Done::AutoCaptionProgress(progress)), [Effect::Refresh { captions: true }]);
        assert_eq!(app.progress(), ["drafting 4/10, 0:12 left"]);
        assert_eq!(app.handle_key(Key::char('X')), [Effect::StopAutoCaptions]);
        app.done(Done::AutoCaptionsEnded(Err("no model folder at models/blip".into())));
        assert!(app.message.text.contains("Captioning failed: no model folder"), "{}", app.message.text);
        assert!(app.running().is_empty() && app.quit_warning().is_none());
        // The model typed once is used again.
        app.handle_key(Key::char('c'));
        let again = app.handle_key(Key::char('a'));
        assert!(again.contains(&Effect::StartAutoCaptions { model: "models/blip".into(), scope: Scope::All }));
    }

    #[test]
    fn the_train_pane_warns_before_leaving_out_images_with_only_a_draft() {
        let (_dir, mut app, _) = app_with_drafts();
        app.apply(Action::ShowPane(crate::tui::action::PaneId::Train));
        assert_eq!(app.handle_key(Key::char('s')), [], "b has only a draft: it asks");
        let screen = crate::tui::view::screen_text(&app, 80, 24);
        assert!(screen.contains("1 image has only an unreviewed draft"), "{screen}");
        assert!(screen.contains("y  start the run") && screen.contains("n  do not start it"), "{screen}");
        assert_eq!(app.handle_key(Key::char('y')), [Effect::StartTraining { resume: None }]);
    }
}
