//! The caption editor widget: ratatui-textarea, word-wrapped, with its own
//! undo; completion of the word being typed from the vocabulary and the
//! dataset's terms.

use std::path::PathBuf;

use ratatui_textarea::{TextArea, WrapMode};

/// One caption open for editing.
#[derive(Debug, Clone)]
pub struct Editor {
    pub image: PathBuf,
    /// The caption file, relative to the dataset.
    pub file: PathBuf,
    /// The text on disk when the editor opened (`None`: no file yet).
    pub loaded: Option<String>,
    pub area: TextArea<'static>,
    /// The image's draft as the model proposed it, when the editor holds
    /// it: saving accepts the draft with the edited text (over `loaded`)
    /// instead of writing a plain caption; nothing changed is nothing to save.
    pub draft: Option<String>,
}

impl Editor {
    pub fn new(image: PathBuf, file: PathBuf, loaded: Option<String>) -> Self {
        let mut area = TextArea::from(loaded.as_deref().unwrap_or("").lines().map(String::from).collect::<Vec<_>>());
        area.set_wrap_mode(WrapMode::Word);
        area.move_cursor(ratatui_textarea::CursorMove::Bottom);
        area.move_cursor(ratatui_textarea::CursorMove::End);
        Self { image, file, loaded, area, draft: None }
    }

    /// The caption as typed: lines joined by spaces (a caption is one line).
    pub fn text(&self) -> String {
        self.area.lines().iter().map(|l| l.trim()).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
    }

    pub fn dirty(&self) -> bool {
        let text = self.text();
        match (&self.draft, &self.loaded) {
            (Some(start), _) | (None, Some(start)) => start.trim() != text,
            (None, None) => !text.is_empty(),
        }
    }

    /// The word being typed, before the cursor.
    pub fn word_at_cursor(&self) -> String {
        let ratatui_textarea::DataCursor(row, col) = self.area.cursor();
        let line = self.area.lines().get(row).map(String::as_str).unwrap_or("");
        let before: String = line.chars().take(col).collect();
        // Char-aware: the separator may be several bytes long (an em dash, say).
        let start = before
            .char_indices()
            .rev()
            .find(|(_, c)| !crate::captions::text::is_word_char(*c))
            .map_or(0, |(i, c)| i + c.len_utf8());
        before[start..].to_string()
    }

    /// Replaces the word before the cursor by `word`.
    pub fn complete(&mut self, word: &str) {
        for _ in 0..self.word_at_cursor().chars().count() {
            self.area.delete_char();
        }
        self.area.insert_str(word);
    }

    /// An editor holding `text` typed over the caption loaded from disk (a
    /// save that failed gives the text back this way).
    pub fn with_text(image: PathBuf, file: PathBuf, loaded: Option<String>, text: String) -> Self {
        let mut editor = Self::new(image, file, loaded);
        editor.area = TextArea::from([text]);
        editor.area.set_wrap_mode(WrapMode::Word);
        editor.area.move_cursor(ratatui_textarea::CursorMove::End);
        editor
    }

    /// An editor holding `text` typed over an image's `draft`, over the caption the file holds.
    pub fn on_draft(image: PathBuf, file: PathBuf, caption: Option<String>, draft: String, text: String) -> Self {
        Self { draft: Some(draft), ..Self::with_text(image, file, caption, text) }
    }
}

/// A tag prompt, single line.
pub fn prompt() -> TextArea<'static> {
    let mut area = TextArea::default();
    area.set_placeholder_text("+tag · -tag · old => new");
    area
}

/// The commonest vocabulary or dataset term starting with the word being typed.
pub fn completion(editor: &Editor, report: Option<&crate::captions::CaptionReport>) -> Option<String> {
    let prefix = editor.word_at_cursor().to_lowercase();
    if prefix.chars().count() < 2 {
        return None;
    }
    let report = report?;
    let vocabulary = report.vocabulary_terms.iter().filter(|t| !t.contains(' '));
    vocabulary
        .chain(report.terms.iter().map(|t| &t.term))
        .find(|term| term.starts_with(&prefix) && term.len() > prefix.len())
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_editor_knows_what_changed_and_completes_words() {
        let mut editor = Editor::new("a.png".into(), "a.txt".into(), Some("zeltmug, a teal mu".into()));
        assert!(!editor.dirty());
        assert_eq!(editor.word_at_cursor(), "mu");
        editor.complete("mug");
        assert_eq!(editor.text(), "zeltmug, a teal mug");
        assert!(editor.dirty());
        let fresh = Editor::new("b.png".into(), "b.txt".into(), None);
        assert!(!fresh.dirty(), "an empty new caption is nothing to save");
    }

    #[test]
    fn completion_after_multibyte_punctuation_does_not_panic() {
        let editor = Editor::new("a.png".into(), "a.txt".into(), Some("a mug — te".into()));
        assert_eq!(editor.word_at_cursor(), "te");
        let editor = Editor::new("a.png".into(), "a.txt".into(), Some("a mug —".into()));
        assert_eq!(editor.word_at_cursor(), "");
    }
}
