//! Captions pane: each image's caption, and whether it names the trigger word.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row};

use super::{field, frame_pane, list_and_detail, render_detail, render_empty, render_table};
use crate::captions::mentions_trigger;
use crate::dataset::CaptionState;
use crate::tui::action::PaneId;
use crate::tui::app::App;

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let theme = &app.theme;
    let entries = &app.files.inventory.entries;
    let trigger = app.project.config.trigger.as_str();
    let (summary, body) = frame_pane(frame, area, theme, "Captions".to_string());

    let texts: Vec<&str> = entries
        .iter()
        .filter_map(|e| match &e.caption {
            CaptionState::Text(text) => Some(text.as_str()),
            _ => None,
        })
        .collect();
    let mut spans =
        vec![Span::styled(format!("{} of {} images captioned", texts.len(), entries.len()), theme.accent())];
    if trigger.is_empty() {
        spans.push(Span::styled(" · no trigger word set", theme.base().fg(theme.warning)));
    } else {
        let with = texts.iter().filter(|t| mentions_trigger(t, trigger)).count();
        let style = if with == texts.len() { theme.base().fg(theme.ok) } else { theme.base().fg(theme.warning) };
        spans.push(Span::styled(format!(" · trigger “{trigger}” in {with}/{}", texts.len()), style));
    }
    if !texts.is_empty() {
        let words: usize = texts.iter().map(|t| t.split_whitespace().count()).sum();
        spans
            .push(Span::styled(format!(" · {:.0} words on average", words as f64 / texts.len() as f64), theme.muted()));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), summary);

    if app.loading {
        return render_empty(frame, body, theme, vec![Line::from("Reading captions…")]);
    }
    if entries.is_empty() {
        return render_empty(frame, body, theme, vec![Line::from("No images, so no captions yet.")]);
    }
    let (list, detail) = list_and_detail(body);
    let rows = entries
        .iter()
        .map(|entry| {
            let caption = match &entry.caption {
                CaptionState::Text(text) => Cell::from(text.clone()),
                CaptionState::Missing => Cell::from(Span::styled("(no caption)", theme.base().fg(theme.warning))),
                CaptionState::Empty => Cell::from(Span::styled("(empty)", theme.base().fg(theme.warning))),
                CaptionState::Unreadable(why) => {
                    Cell::from(Span::styled(format!("({why})"), theme.base().fg(theme.error)))
                }
            };
            let stem = entry.path.file_stem().map_or_else(String::new, |s| s.to_string_lossy().into_owned());
            Row::new(vec![Cell::from(stem), caption])
        })
        .collect();
    let widths = [Constraint::Length(14), Constraint::Min(10)];
    render_table(frame, list, app, Row::new(["Image", "Caption"]), rows, &widths);

    if let (Some(detail), Some(index)) = (detail, app.selection(PaneId::Captions)) {
        let entry = &entries[index];
        let mut lines = vec![Line::styled(entry.path.with_extension("txt").display().to_string(), theme.accent())];
        match &entry.caption {
            CaptionState::Text(text) => {
                lines.push(field(theme, "words", text.split_whitespace().count().to_string()));
                if !trigger.is_empty() {
                    let (mark, style) = if mentions_trigger(text, trigger) {
                        ("present", theme.base().fg(theme.ok))
                    } else {
                        ("missing", theme.base().fg(theme.warning))
                    };
                    lines.push(Line::from(vec![Span::styled("trigger: ", theme.muted()), Span::styled(mark, style)]));
                }
                lines.push(Line::default());
                lines.push(Line::from(text.clone()));
            }
            _ => lines.push(Line::styled("Nothing to show: this image has no usable caption.", theme.muted())),
        }
        render_detail(frame, detail, theme, "Caption", lines);
    }
}
