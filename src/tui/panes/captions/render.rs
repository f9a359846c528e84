//! Drawing the Captions pane: the caption list, the image with its caption
//! (or the editor) and findings, the vocabulary panel, the normalization
//! review, the tag prompt and the conflict question; the drafts list draws
//! each draft in place of the caption (`draft_view`).

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Clear, Paragraph, Row, Wrap};

use super::editor::completion;
use super::{CaptionFilter, CaptionsPane, Mode, caption_text, draft_view};
use crate::captions::lint::Lint;
use crate::captions::mentions_trigger;
use crate::captions::text::{DiffPiece, word_diff};
use crate::dataset::CaptionState;
use crate::tui::shared::Shared;
use crate::tui::widgets::{draw_image, field, frame_pane, list_and_detail, question, render_empty, render_table};
use crate::words::counted;

pub(super) fn render(pane: &CaptionsPane, shared: &Shared, frame: &mut Frame, area: Rect) {
    let theme = &shared.theme;
    let (summary, body) = frame_pane(frame, area, theme, "Captions".to_string());
    frame.render_widget(Paragraph::new(summary_line(pane, shared)), summary);
    if shared.loading {
        return render_empty(frame, body, theme, vec![Line::from("Reading captions…")]);
    }
    if shared.files.inventory.entries.is_empty() {
        return render_empty(frame, body, theme, vec![Line::from("No images, so no captions yet.")]);
    }
    if let Mode::Review { selected, dropped } = &pane.mode {
        return render_review(shared, frame, body, *selected, dropped);
    }
    let (body, prompt) = match &pane.mode {
        Mode::Prompt(_) => {
            let [body, prompt] = Layout::vertical([Constraint::Min(0), Constraint::Length(3)]).areas(body);
            (body, Some(prompt))
        }
        Mode::ModelPrompt(..) => {
            let [body, prompt] = Layout::vertical([Constraint::Min(0), Constraint::Length(5)]).areas(body);
            (body, Some(prompt))
        }
        _ => (body, None),
    };
    let (list, detail) = list_and_detail(body);
    render_list(pane, shared, frame, list);
    if let Some(detail) = detail {
        let block = Block::default().borders(Borders::LEFT).border_style(theme.border(false));
        let inner = block.inner(detail);
        frame.render_widget(block, detail);
        if pane.vocabulary_panel {
            render_vocabulary(pane, shared, frame, inner);
        } else if let Some(queued) = pane.shows_draft(shared) {
            draft_view::render_draft(queued, shared, frame, inner);
        } else {
            render_caption(pane, shared, frame, inner);
        }
    } else if pane.editing().is_some() {
        // Too narrow for two columns: the editor takes the list's place.
        frame.render_widget(Clear, list);
        render_caption(pane, shared, frame, list);
    }
    match (prompt, &pane.mode) {
        (Some(area), Mode::Prompt(prompt)) => {
            let count = pane.rows(shared).len();
            let block = Block::default().borders(Borders::ALL).border_style(theme.border(true)).title(Span::styled(
                format!(" Tag edit for {count} listed captions (Enter applies, Esc cancels) "),
                theme.accent(),
            ));
            let mut prompt = prompt.clone();
            prompt.set_block(block);
            frame.render_widget(&prompt, area);
        }
        (Some(area), Mode::ModelPrompt(prompt, _)) => draft_view::render_model_prompt(prompt, shared, frame, area),
        _ => {}
    }
    match &pane.mode {
        Mode::Conflict(editor) => {
            let lines = [
                format!("{} changed on disk while you edited it.", editor.file.display()),
                String::new(),
                "o  overwrite it with your text (undo brings theirs back)".into(),
                "r  keep the version on disk, drop yours".into(),
                "Esc  keep editing".into(),
            ];
            question(frame, area, theme, "Changed elsewhere", &lines);
        }
        Mode::ConfirmAccept(accepted) => {
            let lines = [
                format!("Write {} without lint findings as captions?", counted(accepted.len(), "draft")),
                "One edit: u undoes it whole.".into(),
                String::new(),
                "y  accept them".into(),
                "n  keep them waiting".into(),
            ];
            question(frame, area, theme, "Accept drafts", &lines);
        }
        Mode::AutoScope => {
            let lines = [
                "Draft captions with the model for:".into(),
                String::new(),
                "m  images without a caption or a draft".into(),
                "a  every image without a draft to review".into(),
                "Esc  cancel".into(),
            ];
            question(frame, area, theme, "Caption with a model", &lines);
        }
        _ => {}
    }
}

fn summary_line(pane: &CaptionsPane, shared: &Shared) -> Line<'static> {
    let theme = &shared.theme;
    let entries = &shared.files.inventory.entries;
    let trigger = shared.project.config.trigger.as_str();
    let texts: Vec<&str> = entries.iter().filter_map(caption_text).collect();
    let mut spans =
        vec![Span::styled(format!("{} of {} captioned", texts.len(), counted(entries.len(), "image")), theme.accent())];
    if trigger.is_empty() {
        spans.push(Span::styled(" · no trigger word set", theme.base().fg(theme.warning)));
    } else {
        let with = texts.iter().filter(|t| mentions_trigger(t, trigger)).count();
        let style = if with == texts.len() { theme.base().fg(theme.ok) } else { theme.base().fg(theme.warning) };
        spans.push(Span::styled(format!(" · trigger “{trigger}” in {with}/{}", texts.len()), style));
    }
    if let Some(report) = &shared.files.captions {
        if let Some(error) = &report.vocabulary_error {
            spans.push(Span::styled(format!(" · {error}"), theme.base().fg(theme.error)));
        }
        let flagged = report.findings.len();
        let style = if flagged > 0 { theme.base().fg(theme.warning) } else { theme.base().fg(theme.ok) };
        spans.push(Span::styled(format!(" · {flagged} with findings"), style));
        if !report.normalization.is_empty() {
            spans.push(Span::raw(format!(" · {} to normalize (N)", report.normalization.len())));
        }
        if let Some(error) = &report.drafts_error {
            spans.push(Span::styled(format!(" · {error}"), theme.base().fg(theme.error)));
        }
        match pane.drafts_waiting(shared) {
            0 => {}
            n => spans.push(Span::styled(format!(" · {n} drafts to review (D)"), theme.accent())),
        }
    }
    if let Some(run) = &pane.auto {
        spans.push(Span::styled(format!(" · {} (X stops)", run.describe()), theme.base().fg(theme.ok)));
    }
    spans.push(Span::styled(format!(" · {}", pane.filter.label()), theme.muted()));
    Line::from(spans)
}

fn findings_of<'a>(shared: &'a Shared, entry: &crate::dataset::DatasetEntry) -> &'a [Lint] {
    shared.files.captions.as_ref().and_then(|r| r.findings.get(&entry.path)).map_or(&[], Vec::as_slice)
}

fn render_list(pane: &CaptionsPane, shared: &Shared, frame: &mut Frame, area: Rect) {
    let theme = &shared.theme;
    let entries = &shared.files.inventory.entries;
    let rows: Vec<Row> = pane
        .rows(shared)
        .into_iter()
        .map(|i| {
            let entry = &entries[i];
            let queued = pane.queued(shared, &entry.path).filter(|_| pane.filter == CaptionFilter::Drafts);
            let caption = match &entry.caption {
                _ if queued.is_some() => Cell::from(queued.map_or_else(String::new, |q| q.draft.text.clone())),
                CaptionState::Text(text) => Cell::from(text.clone()),
                CaptionState::Missing => Cell::from(Span::styled("(no caption)", theme.base().fg(theme.warning))),
                CaptionState::Empty => Cell::from(Span::styled("(empty)", theme.base().fg(theme.warning))),
                CaptionState::Unreadable(why) => {
                    Cell::from(Span::styled(format!("({why})"), theme.base().fg(theme.error)))
                }
            };
            let count = match pane.filter {
                CaptionFilter::Drafts => pane.queued(shared, &entry.path).map_or(0, |q| q.findings.len()),
                _ => findings_of(shared, entry).len(),
            };
            let mark = if count == 0 {
                Span::raw(" ")
            } else {
                Span::styled(count.to_string(), theme.base().fg(theme.warning))
            };
            let stem = entry.path.file_stem().map_or_else(String::new, |s| s.to_string_lossy().into_owned());
            Row::new(vec![Cell::from(stem), Cell::from(mark), caption])
        })
        .collect();
    if rows.is_empty() {
        let filter = pane.filter.label();
        return render_empty(
            frame,
            area,
            theme,
            vec![Line::from(format!("No {filter} captions (f changes the list)."))],
        );
    }
    let widths = [Constraint::Length(12), Constraint::Length(1), Constraint::Min(10)];
    let text = if pane.filter == CaptionFilter::Drafts { "Draft" } else { "Caption" };
    render_table(frame, area, theme, pane.selected(shared), (Row::new(["Image", "!", text]), rows), &widths);
}

/// The image, its caption (or the editor) and the caption's findings.
fn render_caption(pane: &CaptionsPane, shared: &Shared, frame: &mut Frame, area: Rect) {
    let theme = &shared.theme;
    let Some(entry) = pane.entry(shared) else { return };
    let editor = pane.editing();
    // While editing, the editor's own image and file, whatever the list shows.
    let image = editor.map_or(&entry.path, |e| &e.image);
    let preview_height = if area.height >= 16 { area.height * 2 / 5 } else { 0 };
    let [preview, caption, notes] =
        Layout::vertical([Constraint::Length(preview_height), Constraint::Min(4), Constraint::Length(5)]).areas(area);
    if preview.height > 0 {
        draw_image(shared, frame, preview, &shared.project.dataset_dir().join(image));
    }
    let file = match editor {
        Some(editor) => editor.file.display().to_string(),
        None => entry.path.with_extension(&shared.project.config.caption_extension).display().to_string(),
    };
    match editor {
        Some(editor) => {
            let unsaved = if editor.dirty() { " ● unsaved" } else { "" };
            let draft = if editor.draft.is_some() { "draft → " } else { "" };
            let block = Block::default()
                .borders(Borders::ALL)
                .border_style(theme.border(true))
                .title(Span::styled(format!(" {draft}{file}{unsaved} "), theme.accent()));
            let mut area = editor.area.clone();
            area.set_block(block);
            area.set_cursor_line_style(theme.base());
            area.set_cursor_style(theme.selection().add_modifier(Modifier::REVERSED));
            frame.render_widget(&area, caption);
        }
        None => {
            let text = match &entry.caption {
                CaptionState::Text(text) => Line::from(text.clone()),
                CaptionState::Missing | CaptionState::Empty => {
                    Line::styled("No caption yet: Enter writes one.", theme.base().fg(theme.warning))
                }
                CaptionState::Unreadable(why) => Line::styled(why.clone(), theme.base().fg(theme.error)),
            };
            let block = Block::default()
                .borders(Borders::ALL)
                .border_style(theme.border(false))
                .title(Span::styled(format!(" {file} "), theme.muted()));
            frame.render_widget(Paragraph::new(text).block(block).wrap(Wrap { trim: false }), caption);
        }
    }
    // While editing, the findings follow the text as it is typed.
    let live: Vec<Lint>;
    let findings: &[Lint] = match (editor, &shared.files.caption_context) {
        (Some(editor), Some(context)) => {
            let suggestions = shared.files.captions.as_ref().map_or(&[][..], |report| &report.suggestions);
            live = crate::captions::lint_caption(&mut context.0.linter(), &editor.text(), suggestions);
            &live
        }
        _ => findings_of(shared, entry),
    };
    let mut lines: Vec<Line> = findings
        .iter()
        .map(|lint| Line::styled(format!("• {}", lint.describe()), theme.base().fg(theme.warning)))
        .collect();
    if let Some(hint) = editor.and_then(|e| completion(e, shared.files.captions.as_ref())) {
        lines.insert(0, field(theme, "Tab", hint));
    }
    if lines.is_empty() {
        lines.push(Line::styled("No findings.", theme.base().fg(theme.ok)));
    }
    if editor.is_none() && pane.queued(shared, &entry.path).is_some() {
        lines.push(Line::styled("A model's draft awaits review here (D lists the drafts).", theme.accent()));
    }
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), notes);
}

/// Term frequencies and the suggested alias rules.
fn render_vocabulary(pane: &CaptionsPane, shared: &Shared, frame: &mut Frame, area: Rect) {
    let theme = &shared.theme;
    let Some(report) = &shared.files.captions else {
        return render_empty(frame, area, theme, vec![Line::from("Reading the captions…")]);
    };
    let mut lines = vec![Line::styled("Suggested rules (A accepts, < > choose)", theme.accent())];
    if report.suggestions.is_empty() {
        lines.push(Line::styled("none: the terms look consistent", theme.muted()));
    }
    for (i, s) in report.suggestions.iter().enumerate() {
        let style = if i == pane.suggestion { theme.selection() } else { theme.base() };
        lines.push(Line::styled(format!("{} = [\"{}\"]", s.canonical, s.alias), style));
        lines.push(Line::styled(
            format!("   {} ×{} vs {} ×{}: {}", s.alias, s.alias_captions, s.canonical, s.canonical_captions, s.why),
            theme.muted(),
        ));
    }
    lines.push(Line::default());
    lines.push(Line::styled("Terms (captions using them)", theme.accent()));
    let rows = usize::from(area.height).saturating_sub(lines.len());
    lines.extend(report.terms.iter().take(rows).map(|t| Line::from(format!("{:>4}  {}", t.captions, t.term))));
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), area);
}

/// What normalization would change, caption by caption, as word diffs.
fn render_review(shared: &Shared, frame: &mut Frame, area: Rect, selected: usize, dropped: &[std::path::PathBuf]) {
    let theme = &shared.theme;
    let changes: Vec<_> =
        shared.files.captions.iter().flat_map(|r| &r.normalization).filter(|c| !dropped.contains(&c.path)).collect();
    let [header, list] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(area);
    frame.render_widget(
        Paragraph::new(Line::styled(
            format!(
                "Normalization: {} {} · a applies all · Enter this one · x skips · Esc",
                counted(changes.len(), "caption"),
                if changes.len() == 1 { "changes" } else { "change" }
            ),
            theme.accent(),
        )),
        header,
    );
    let mut lines = Vec::new();
    for (i, change) in changes.iter().enumerate() {
        let style = if i == selected { theme.selection() } else { theme.muted() };
        lines.push(Line::styled(change.path.display().to_string(), style));
        let mut spans = vec![Span::raw("  ")];
        let diff = word_diff(change.before.as_deref().unwrap_or(""), change.after.as_deref().unwrap_or(""));
        spans.extend(diff_spans(shared, &diff));
        lines.push(Line::from(spans));
    }
    // Keep the selected change in view: scroll by whole entries.
    let scroll = (selected * 2).saturating_sub(usize::from(list.height) / 2);
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }).scroll((scroll as u16, 0)), list);
}

/// A word diff as text a person reads in any theme: `[-removed-]` and `{+added+}`.
pub(super) fn diff_spans(shared: &Shared, diff: &[DiffPiece]) -> Vec<Span<'static>> {
    let theme = &shared.theme;
    let mut spans = Vec::new();
    for piece in diff {
        spans.push(match piece {
            DiffPiece::Same(text) => Span::raw(text.clone()),
            DiffPiece::Removed(text) => {
                Span::styled(format!("[-{text}-]"), theme.base().fg(theme.error).add_modifier(Modifier::CROSSED_OUT))
            }
            DiffPiece::Added(text) => Span::styled(format!("{{+{text}+}}"), theme.base().fg(theme.ok)),
        });
        spans.push(Span::raw(" "));
    }
    spans
}
