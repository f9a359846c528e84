//! Caption writes, journaled: every edit (one caption, or a batch such as a
//! normalization) is appended to `dataset/.easel-captions.jsonl` with each
//! file's text before and after, flushed, and only then written, one atomic
//! rename per file. So a kill at any moment leaves each caption fully old or
//! fully new, and the journal knows which edit was under way. Undo and redo
//! are journal lines too, so they survive restarts.
//!
//! Before writing, each file must still hold what the edit expects (its
//! `before`, or its `after` when an interrupted write is being completed):
//! a caption changed on disk by something else is never overwritten
//! silently — the edit is refused with `Conflict`.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fsutil::atomic_write;

pub const FILE: &str = ".easel-captions.jsonl";

/// One caption file's change; `None` is "no file".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The caption file, relative to the dataset folder.
    pub path: PathBuf,
    pub before: Option<String>,
    pub after: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edit {
    pub label: String,
    pub changes: Vec<Change>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Line {
    Edit(Edit),
    Undo,
    Redo,
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("{} changed on disk since it was read; reload it or overwrite it", path.display())]
    Conflict { path: PathBuf },
    #[error("{0}")]
    Io(String),
}

fn io_error(what: &str, path: &Path, error: std::io::Error) -> JournalError {
    JournalError::Io(format!("cannot {what} {}: {error}", path.display()))
}

/// What a caption file holds now: `None` when there is none; an error for
/// a file that is not UTF-8 (which is never rewritten).
pub fn read_text(path: &Path) -> Result<Option<String>, JournalError> {
    match fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| JournalError::Io(format!("{} is not UTF-8 text; fix its encoding first", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error("read", path, e)),
    }
}

/// Whether two caption texts say the same: whitespace around a caption, or
/// an empty file for none, is no difference (`None` is no file).
pub fn same_caption(a: Option<&str>, b: Option<&str>) -> bool {
    a.unwrap_or("").trim() == b.unwrap_or("").trim()
}

/// The edits of a dataset and where undo stands.
#[derive(Debug)]
pub struct Journal {
    dataset: PathBuf,
    edits: Vec<Edit>,
    /// Indices into `edits`: applied (undo takes the last), undone (redo takes the last).
    applied: Vec<usize>,
    undone: Vec<usize>,
}

impl Journal {
    /// Reads the dataset's journal (none yet is empty); a torn last line is ignored.
    pub fn open(dataset: &Path) -> Self {
        let mut journal =
            Self { dataset: dataset.to_path_buf(), edits: Vec::new(), applied: Vec::new(), undone: Vec::new() };
        let text = fs::read_to_string(dataset.join(FILE)).unwrap_or_default();
        for line in text.lines().filter_map(|line| serde_json::from_str::<Line>(line).ok()) {
            journal.replay(line);
        }
        journal
    }

    fn replay(&mut self, line: Line) {
        match line {
            Line::Edit(edit) => {
                self.edits.push(edit);
                self.applied.push(self.edits.len() - 1);
                self.undone.clear();
            }
            Line::Undo => {
                if let Some(i) = self.applied.pop() {
                    self.undone.push(i);
                }
            }
            Line::Redo => {
                if let Some(i) = self.undone.pop() {
                    self.applied.push(i);
                }
            }
        }
    }

    /// The label of the edit undo would revert, and of the one redo would repeat.
    pub fn undo_label(&self) -> Option<&str> {
        self.applied.last().map(|&i| self.edits[i].label.as_str())
    }

    pub fn redo_label(&self) -> Option<&str> {
        self.undone.last().map(|&i| self.edits[i].label.as_str())
    }

    fn append(&self, line: &Line) -> Result<(), JournalError> {
        let file = self.dataset.join(FILE);
        let mut text = serde_json::to_string(line).map_err(|e| JournalError::Io(e.to_string()))?;
        text.push('\n');
        // A line torn by a kill has no newline: start afresh, or this line would join it.
        let torn = fs::read(&file).is_ok_and(|bytes| bytes.last().is_some_and(|&b| b != b'\n'));
        if torn {
            text.insert(0, '\n');
        }
        let mut handle =
            OpenOptions::new().create(true).append(true).open(&file).map_err(|e| io_error("open", &file, e))?;
        handle.write_all(text.as_bytes()).map_err(|e| io_error("write", &file, e))?;
        handle.sync_data().map_err(|e| io_error("flush", &file, e))
    }

    /// Checks that every file holds `from` (or already `to`), then writes `to`.
    fn check(&self, changes: &[(&Path, &Option<String>, &Option<String>)]) -> Result<(), JournalError> {
        for (path, from, to) in changes {
            let now = read_text(&self.dataset.join(path))?;
            let now = now.as_deref();
            if !same_caption(now, from.as_deref()) && !same_caption(now, to.as_deref()) {
                return Err(JournalError::Conflict { path: path.to_path_buf() });
            }
        }
        Ok(())
    }

    fn write(&self, changes: &[(&Path, &Option<String>, &Option<String>)]) -> Result<(), JournalError> {
        // Test support: slow batch writes down so a test can kill one mid-way.
        let pause = std::env::var("EASEL_FAULT_PAUSE_WRITES_MS").ok().and_then(|v| v.parse().ok());
        for (path, _, to) in changes {
            let file = self.dataset.join(path);
            match to {
                Some(text) => atomic_write(&file, text.as_bytes()).map_err(|e| io_error("write", &file, e))?,
                None if file.exists() => fs::remove_file(&file).map_err(|e| io_error("remove", &file, e))?,
                None => {}
            }
            if let Some(ms) = pause {
                std::thread::sleep(std::time::Duration::from_millis(ms));
            }
        }
        Ok(())
    }

    /// Applies an edit (changes whose `after` differs from `before`) as one undoable step.
    pub fn apply(&mut self, label: &str, changes: Vec<Change>) -> Result<usize, JournalError> {
        let changes: Vec<Change> = changes.into_iter().filter(|c| c.before != c.after).collect();
        if changes.is_empty() {
            return Ok(0);
        }
        let view: Vec<_> = changes.iter().map(|c| (c.path.as_path(), &c.before, &c.after)).collect();
        self.check(&view)?;
        let edit = Edit { label: label.to_string(), changes };
        self.append(&Line::Edit(edit.clone()))?;
        let count = edit.changes.len();
        self.replay(Line::Edit(edit));
        let edit = &self.edits[self.edits.len() - 1];
        self.write(&edit.changes.iter().map(|c| (c.path.as_path(), &c.before, &c.after)).collect::<Vec<_>>())?;
        Ok(count)
    }

    /// Reverts the last applied edit; returns its label (`None`: nothing to undo).
    pub fn undo(&mut self) -> Result<Option<String>, JournalError> {
        self.step(Line::Undo)
    }

    /// Applies the last undone edit again.
    pub fn redo(&mut self) -> Result<Option<String>, JournalError> {
        self.step(Line::Redo)
    }

    /// Undoes or redoes the edit on top of its stack: every file is checked,
    /// the step journaled (memory follows the journal at once), then written.
    fn step(&mut self, line: Line) -> Result<Option<String>, JournalError> {
        let undo = matches!(line, Line::Undo);
        let stack = if undo { &self.applied } else { &self.undone };
        let Some(&index) = stack.last() else { return Ok(None) };
        let edit = self.edits[index].clone();
        let view: Vec<_> =
            edit.changes
                .iter()
                .map(|c| {
                    if undo { (c.path.as_path(), &c.after, &c.before) } else { (c.path.as_path(), &c.before, &c.after) }
                })
                .collect();
        self.check(&view)?;
        self.append(&line)?;
        self.replay(line);
        self.write(&view)?;
        Ok(Some(edit.label))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(path: &str, before: Option<&str>, after: Option<&str>) -> Change {
        Change { path: path.into(), before: before.map(String::from), after: after.map(String::from) }
    }

    #[test]
    fn undo_and_redo_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::write(d.join("a.txt"), "a cup").unwrap();
        let mut journal = Journal::open(d);
        let changes = vec![change("a.txt", Some("a cup"), Some("a mug")), change("b.txt", None, Some("new"))];
        assert_eq!(journal.apply("normalize", changes).unwrap(), 2);
        assert_eq!(fs::read_to_string(d.join("b.txt")).unwrap(), "new");
        // A new process: the journal is read back.
        let mut journal = Journal::open(d);
        assert_eq!(journal.undo_label(), Some("normalize"));
        assert_eq!(journal.undo().unwrap().as_deref(), Some("normalize"));
        assert_eq!(fs::read_to_string(d.join("a.txt")).unwrap(), "a cup");
        assert!(!d.join("b.txt").exists());
        let mut journal = Journal::open(d);
        assert_eq!(journal.undo().unwrap(), None, "nothing left to undo");
        assert_eq!(journal.redo().unwrap().as_deref(), Some("normalize"));
        assert_eq!(fs::read_to_string(d.join("a.txt")).unwrap(), "a mug");
        // A torn line (a kill mid-append) is ignored, and the next edit is not glued to it.
        let mut file = OpenOptions::new().append(true).open(d.join(FILE)).unwrap();
        file.write_all(b"{\"op\":\"ed").unwrap();
        assert_eq!(Journal::open(d).undo_label(), Some("normalize"));
        Journal::open(d).apply("second", vec![change("c.txt", None, Some("c"))]).unwrap();
        assert_eq!(Journal::open(d).undo_label(), Some("second"));
    }

    #[test]
    fn a_caption_changed_on_disk_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::write(d.join("a.txt"), "a cup\n").unwrap();
        let mut journal = Journal::open(d);
        let ok = journal.apply("edit", vec![change("a.txt", Some("a cup"), Some("a mug"))]);
        assert!(ok.is_ok(), "a trailing newline is not an edit made elsewhere");
        fs::write(d.join("a.txt"), "edited elsewhere").unwrap();
        let mut journal = Journal::open(d);
        let error = journal.apply("edit", vec![change("a.txt", Some("a cup"), Some("a mug"))]).unwrap_err();
        assert!(matches!(error, JournalError::Conflict { .. }), "{error}");
        assert_eq!(fs::read_to_string(d.join("a.txt")).unwrap(), "edited elsewhere");
        fs::write(d.join("bad.txt"), b"caf\xe9").unwrap();
        assert!(read_text(&d.join("bad.txt")).is_err(), "Latin-1 is reported, not read as text");
    }
}
