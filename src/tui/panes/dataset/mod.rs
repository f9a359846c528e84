//! Dataset pane: every image with its scan flags, sharpness and size; a
//! preview (a duplicate group side by side); keep / reject / restore. Until
//! the first scan arrives it lists the images from their headers.

mod render;
mod review;

use crossterm::event::KeyCode;
use ratatui::Frame;
use ratatui::layout::Rect;

use crate::dataset::decisions::Decision;
use crate::tui::action::{Action, PaneId};
use crate::tui::effect::Effect;
use crate::tui::jobs::{Done, ScanResult};
use crate::tui::keymap::{Binding, Key};
use crate::tui::pane::{Pane, Selection, list_bindings};
use crate::tui::shared::{Level, ProjectFiles, Shared};
use review::{DatasetReview, ReviewRow};

#[derive(Default)]
pub struct DatasetPane {
    review: DatasetReview,
    selection: Selection,
}

impl DatasetPane {
    /// Rows in the list: the scan's, or the images' headers until it arrives.
    fn list_len(&self, shared: &Shared) -> usize {
        match self.review.scan {
            Some(_) => self.review.rows().len(),
            None => shared.files.inventory.entries.len(),
        }
    }

    fn selected(&self, shared: &Shared) -> Option<usize> {
        self.selection.get(self.list_len(shared))
    }

    /// The selected row, once a scan has arrived.
    fn review_row(&self, shared: &Shared) -> Option<ReviewRow> {
        self.review.scan.as_ref()?;
        self.selected(shared).map(|i| self.review.rows()[i])
    }

    fn review_action(&mut self, action: Action, shared: &Shared) -> Vec<Effect> {
        if self.review.scan.is_none() {
            return vec![Effect::info("The scan has not finished yet.")];
        }
        let rows = self.review.rows();
        let Some(index) = self.selected(shared) else {
            return vec![Effect::info("No image here (f changes the filter).")];
        };
        let row = rows[index];
        let decision = match (action, row) {
            (Action::NextToReview | Action::PreviousToReview, _) => {
                return match self.review.next_to_review(&rows, index, action == Action::NextToReview) {
                    Some(next) => {
                        self.selection.set(next);
                        Vec::new()
                    }
                    None => vec![Effect::info("Nothing left to review in this list.")],
                };
            }
            (Action::RestoreImage, ReviewRow::Rejected(i)) => {
                self.review.scan.as_ref().map(|scan| Decision::Restore(scan.rejected[i].clone()))
            }
            (Action::RestoreImage, _) => {
                return vec![Effect::info("Only rejected images can be restored (f shows them).")];
            }
            (_, ReviewRow::Rejected(_)) => return vec![Effect::info("This image is rejected: u restores it.")],
            (Action::KeepImage, _) => self.review.keep_decision(row),
            (Action::RejectImage, _) => self.review.finding(row).map(|f| Decision::Reject(vec![f.record.path.clone()])),
            (_, _) => match self.review.reject_group_decision(row) {
                None => return vec![Effect::info("This image is in no duplicate group.")],
                decision => decision,
            },
        };
        decision.map(Effect::Decide).into_iter().collect()
    }

    /// Changes the list's filter or order, keeping the selected image selected when it is still listed.
    fn reorder(&mut self, shared: &Shared, change: impl FnOnce(&mut DatasetReview)) -> Vec<Effect> {
        let before = self.review_row(shared);
        change(&mut self.review);
        let rows = self.review.rows();
        self.selection.set(before.and_then(|row| rows.iter().position(|r| *r == row)).unwrap_or(0));
        vec![Effect::info(format!(
            "Showing {}, by {} ({}).",
            self.review.filter.label(),
            self.review.sort.label(),
            crate::words::counted(rows.len(), "image")
        ))]
    }

    fn scan_loaded(&mut self, result: &ScanResult, shared: &Shared) {
        self.review.progress = None;
        // The selected image stays selected if it is still listed; when it
        // left the list (rejected, kept under "to review"), the row that took
        // its place is selected: the next one.
        let before = self.review_row(shared).and_then(|row| self.review.row_path(row));
        self.review.loaded(result.clone());
        let rows = self.review.rows();
        let found =
            before.and_then(|path| rows.iter().position(|&row| self.review.row_path(row).as_ref() == Some(&path)));
        if let Some(found) = found {
            self.selection.set(found);
        }
        self.selection.clamp(rows.len());
    }
}

impl Pane for DatasetPane {
    fn id(&self) -> PaneId {
        PaneId::Dataset
    }

    fn bindings(&self) -> Vec<Binding> {
        let mut bindings = list_bindings("image");
        bindings.extend([
            Binding::new(&[Key::char('n')], Action::NextToReview, "next image to review (flagged, not kept)"),
            Binding::new(&[Key::char('N')], Action::PreviousToReview, "previous image to review"),
            Binding::new(&[Key::char(' ')], Action::KeepImage, "keep the image despite its flags (again: undo)"),
            Binding::new(&[Key::char('x')], Action::RejectImage, "reject: move it and its caption to _rejected/"),
            Binding::new(&[Key::char('X')], Action::RejectDuplicates, "reject its duplicate group but the sharpest"),
            Binding::new(&[Key::char('u')], Action::RestoreImage, "restore a rejected image"),
            Binding::new(&[Key::char('f')], Action::CycleFilter, "filter: all, to review, each flag, rejected"),
            Binding::new(&[Key::char('o')], Action::CycleSort, "order: name, sharpness, size, duplicate group"),
            Binding::new(
                &[Key::char('v'), Key::plain(KeyCode::Enter)],
                Action::ToggleFullView,
                "the image alone, full size",
            ),
            Binding::new(&[Key::plain(KeyCode::Esc)], Action::Close, "close the full view"),
        ]);
        bindings
    }

    fn apply(&mut self, action: Action, shared: &Shared) -> Vec<Effect> {
        if self.selection.apply(action, self.list_len(shared)) {
            return Vec::new();
        }
        match action {
            Action::ToggleFullView => self.review.full = !self.review.full,
            Action::Close => self.review.full = false,
            Action::KeepImage
            | Action::RejectImage
            | Action::RestoreImage
            | Action::RejectDuplicates
            | Action::NextToReview
            | Action::PreviousToReview => return self.review_action(action, shared),
            Action::CycleFilter => return self.reorder(shared, DatasetReview::cycle_filter),
            Action::CycleSort => return self.reorder(shared, DatasetReview::cycle_sort),
            _ => {}
        }
        Vec::new()
    }

    fn done(&mut self, done: &Done, shared: &Shared) -> Vec<Effect> {
        match done {
            Done::ScanProgress(done, total) => self.review.progress = Some((*done, *total)),
            Done::Scanned(result) => self.scan_loaded(result, shared),
            // A keep only changes the kept list, given as read back; moved files mean a rescan.
            Done::Decided { result, kept } => {
                let said = match result {
                    Ok(text) => Effect::say(Level::Success, text),
                    Err(error) => Effect::say(Level::Error, format!("Not done: {error}")),
                };
                return match (kept, self.review.scan.as_mut()) {
                    (Some(kept), Some(scan)) => {
                        scan.kept = kept.clone();
                        vec![said]
                    }
                    (Some(_), None) => vec![said, Effect::Scan],
                    (None, _) => vec![said, Effect::Scan, Effect::Refresh { captions: false }],
                };
            }
            _ => {}
        }
        Vec::new()
    }

    fn files_loaded(&mut self, previous: &ProjectFiles, shared: &Shared) -> Vec<Effect> {
        self.selection.clamp(self.list_len(shared));
        // New, changed or removed images or captions: the scan's findings are stale.
        if previous.inventory != shared.files.inventory { vec![Effect::Scan] } else { Vec::new() }
    }

    fn render(&self, shared: &Shared, frame: &mut Frame, area: Rect) {
        render::render(self, shared, frame, area);
    }
}
