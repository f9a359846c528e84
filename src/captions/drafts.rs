//! Drafts: captions a model proposed, waiting for a person to read them.
//! A draft is never a caption: it lives in `dataset/.easel-drafts.json`, not
//! in the caption files, so training and lint see its image as uncaptioned
//! until someone accepts it. Accepting writes the caption through the
//! journal (undoable, conflict-checked like any edit); rejecting keeps a
//! record, so a rerun of `captions auto` does not propose it again.
//!
//! The file is rewritten whole and atomically under a lock
//! (`.easel-drafts.lock`), each change a read-modify-write: a kill leaves
//! the old or the new file, never a torn draft, and a captioning run in the
//! background, the workbench and the command line can all change it.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::journal::{Change, Journal, read_text, same_caption};
use super::normalize::{Rules, normalize};
use super::trigger::mentions_trigger;
use crate::fsutil::atomic_write;

pub const FILE: &str = ".easel-drafts.json";
const LOCK: &str = ".easel-drafts.lock";
const VERSION: u32 = 1;

/// Where a draft stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Review {
    Pending,
    /// Written as the caption. `replaced` is what the caption file held
    /// before: when it holds that again (the acceptance was undone), the
    /// draft is back in the queue.
    Accepted {
        replaced: Option<String>,
    },
    Rejected,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Draft {
    /// The image, relative to the dataset folder.
    pub image: PathBuf,
    /// What accepting writes: the model's words normalized with the
    /// project's vocabulary, the trigger placed.
    pub text: String,
    /// The model's own words.
    pub raw: String,
    /// Which captioner wrote it (`Captioner::describe`).
    pub model: String,
    /// Unix seconds.
    pub made: i64,
    pub review: Review,
}

impl Draft {
    /// A pending draft of a model's caption for `image`: normalized with the
    /// project's rules, the trigger added where it is missing (at the front,
    /// where normalization puts it; a model never knows the trigger).
    pub fn new(image: PathBuf, raw: &str, model: &str, rules: &Rules) -> Self {
        let raw = raw.trim();
        let with_trigger = if rules.trigger.is_empty() || raw.is_empty() || mentions_trigger(raw, &rules.trigger) {
            raw.to_string()
        } else {
            format!("{}, {raw}", rules.trigger)
        };
        Self {
            image,
            text: normalize(&with_trigger, rules),
            raw: raw.to_string(),
            model: model.to_string(),
            made: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64),
            review: Review::Pending,
        }
    }

    /// Whether a person still has to look at it, given what the image's
    /// caption file holds now.
    pub fn awaits_review(&self, caption: Option<&str>) -> bool {
        match &self.review {
            Review::Pending => true,
            Review::Accepted { replaced } => same_caption(caption, replaced.as_deref()),
            Review::Rejected => false,
        }
    }
}

#[cfg(test)]
impl Draft {
    /// A pending draft of `text` as it is, for the tests.
    pub(crate) fn pending(image: &str, text: &str) -> Self {
        Self {
            image: image.into(),
            text: text.into(),
            raw: text.into(),
            model: "test".into(),
            made: 0,
            review: Review::Pending,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredDrafts {
    version: u32,
    drafts: Vec<Draft>,
}

/// A dataset's drafts by image.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Drafts {
    by_image: BTreeMap<PathBuf, Draft>,
}

impl Drafts {
    /// Reads the dataset's drafts (no file: none). A file that does not
    /// parse is an error naming it; it is never overwritten.
    pub fn read(dataset: &Path) -> Result<Self> {
        let path = dataset.join(FILE);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let stored: StoredDrafts = serde_json::from_slice(&bytes).with_context(|| {
            format!("{} is not a drafts file Easel can read; move it aside to start afresh", path.display())
        })?;
        if stored.version != VERSION {
            bail!("{}: drafts format {} (this Easel reads {VERSION})", path.display(), stored.version);
        }
        Ok(Self { by_image: stored.drafts.into_iter().map(|d| (d.image.clone(), d)).collect() })
    }

    pub fn get(&self, image: &Path) -> Option<&Draft> {
        self.by_image.get(image)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Draft> {
        self.by_image.values()
    }

    pub fn len(&self) -> usize {
        self.by_image.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_image.is_empty()
    }

    /// Adds or replaces the draft of its image.
    pub fn insert(&mut self, draft: Draft) {
        self.by_image.insert(draft.image.clone(), draft);
    }

    /// Marks these images' drafts rejected; returns how many were awaiting review.
    pub fn reject(&mut self, images: &[PathBuf]) -> usize {
        let mut count = 0;
        for image in images {
            if let Some(draft) = self.by_image.get_mut(image) {
                count += usize::from(draft.review != Review::Rejected);
                draft.review = Review::Rejected;
            }
        }
        count
    }

    fn write(&self, dataset: &Path) -> Result<()> {
        let stored = StoredDrafts { version: VERSION, drafts: self.by_image.values().cloned().collect() };
        let path = dataset.join(FILE);
        atomic_write(&path, &serde_json::to_vec_pretty(&stored)?)
            .with_context(|| format!("cannot write {}", path.display()))
    }
}

/// Changes the dataset's drafts: read under the lock, `change`d, written
/// back atomically (only when `change` succeeds).
pub fn update<T>(dataset: &Path, change: impl FnOnce(&mut Drafts) -> Result<T>) -> Result<T> {
    let lock_path = dataset.join(LOCK);
    let lock = File::create(&lock_path).with_context(|| format!("cannot create {}", lock_path.display()))?;
    // Released when `lock` is dropped, after the write.
    lock.lock().with_context(|| format!("cannot lock {}", lock_path.display()))?;
    let mut drafts = Drafts::read(dataset)?;
    let result = change(&mut drafts)?;
    drafts.write(dataset)?;
    Ok(result)
}

/// An accepted draft: its image and the caption to write (`None`: the
/// draft's text as it is; `Some`: the text a person edited it into).
pub struct Acceptance {
    pub image: PathBuf,
    pub edited: Option<String>,
}

/// Writes the accepted drafts as their images' captions in one journal edit
/// (one undo), then marks them accepted. A caption file changed since it was
/// read is never overwritten: the journal refuses the whole edit. Returns
/// how many captions changed.
pub fn accept(dataset: &Path, extension: &str, accepted: &[Acceptance], journal: &mut Journal) -> Result<usize> {
    update(dataset, |drafts| {
        let mut changes = Vec::new();
        let mut replaced = Vec::new();
        for acceptance in accepted {
            let draft = drafts
                .get(&acceptance.image)
                .with_context(|| format!("{}: no draft to accept", acceptance.image.display()))?;
            let file = acceptance.image.with_extension(extension);
            let before = read_text(&dataset.join(&file))?;
            let after = acceptance.edited.clone().unwrap_or_else(|| draft.text.clone());
            replaced.push((acceptance.image.clone(), before.clone()));
            changes.push(Change { path: file, before, after: Some(after) });
        }
        let label = match accepted {
            [one] => format!("accept the draft for {}", one.image.display()),
            many => format!("accept {} drafts", many.len()),
        };
        let written = journal.apply(&label, changes)?;
        for (image, before) in replaced {
            if let Some(draft) = drafts.by_image.get_mut(&image) {
                draft.review = Review::Accepted { replaced: before };
            }
        }
        Ok(written)
    })
}

/// The drafts awaiting review, in image order, each with what its caption
/// file holds now.
pub fn awaiting_review(dataset: &Path, extension: &str, drafts: &Drafts) -> Vec<(Draft, Option<String>)> {
    drafts
        .iter()
        .filter_map(|draft| {
            let caption = read_text(&dataset.join(draft.image.with_extension(extension))).ok().flatten();
            draft.awaits_review(caption.as_deref()).then(|| (draft.clone(), caption))
        })
        .collect()
}

/// The images with no usable caption (no file, or only blanks) whose draft
/// awaits review, relative to the dataset: training leaves them out and lint
/// names the draft, so nobody mistakes them for plainly uncaptioned. Reads the
/// drafts file and only the drafted images' caption files, so it is cheap
/// enough to call before every run.
pub fn unreviewed_uncaptioned(dataset: &Path, extension: &str) -> Result<Vec<PathBuf>> {
    let drafts = Drafts::read(dataset)?;
    Ok(drafts
        .iter()
        .filter(|draft| {
            // An unreadable caption file is its own problem, reported as such.
            let Ok(caption) = read_text(&dataset.join(draft.image.with_extension(extension))) else { return false };
            caption.as_deref().is_none_or(|text| text.trim().is_empty()) && draft.awaits_review(caption.as_deref())
        })
        .map(|draft| draft.image.clone())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_writes_through_the_journal_and_undo_brings_the_draft_back() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::write(d.join("b.txt"), "a human caption").unwrap();
        update(d, |drafts| {
            drafts.insert(Draft::pending("a.png", "ohwx, a mug"));
            drafts.insert(Draft::pending("b.png", "ohwx, a cup"));
            Ok(())
        })
        .unwrap();
        assert_eq!(awaiting_review(d, "txt", &Drafts::read(d).unwrap()).len(), 2);
        let mut journal = Journal::open(d);
        let accepted = [Acceptance { image: "a.png".into(), edited: None }];
        assert_eq!(accept(d, "txt", &accepted, &mut journal).unwrap(), 1);
        assert_eq!(fs::read_to_string(d.join("a.txt")).unwrap(), "ohwx, a mug");
        assert_eq!(fs::read_to_string(d.join("b.txt")).unwrap(), "a human caption", "untouched");
        let queue = awaiting_review(d, "txt", &Drafts::read(d).unwrap());
        assert_eq!(queue.len(), 1);
        assert_eq!(queue[0].1.as_deref(), Some("a human caption"), "the current caption comes with its draft");

        Journal::open(d).undo().unwrap();
        assert!(!d.join("a.txt").exists());
        assert_eq!(awaiting_review(d, "txt", &Drafts::read(d).unwrap()).len(), 2, "undone: back in the queue");

        let edited = [Acceptance { image: "b.png".into(), edited: Some("ohwx, a teal mug".into()) }];
        accept(d, "txt", &edited, &mut Journal::open(d)).unwrap();
        assert_eq!(fs::read_to_string(d.join("b.txt")).unwrap(), "ohwx, a teal mug");
        update(d, |drafts| Ok(drafts.reject(&["a.png".into()]))).unwrap();
        assert!(awaiting_review(d, "txt", &Drafts::read(d).unwrap()).is_empty());
        Journal::open(d).undo().unwrap();
        assert_eq!(fs::read_to_string(d.join("b.txt")).unwrap(), "a human caption", "byte for byte");
    }

    #[test]
    fn unreviewed_uncaptioned_lists_only_images_whose_draft_is_all_they_have() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::write(d.join("captioned.txt"), "a human caption").unwrap();
        fs::write(d.join("blank.txt"), "  \n").unwrap();
        update(d, |drafts| {
            for image in ["captioned.png", "blank.png", "missing.png", "rejected.png", "accepted.png"] {
                drafts.insert(Draft::pending(image, "ohwx, a mug"));
            }
            Ok(drafts.reject(&["rejected.png".into()]))
        })
        .unwrap();
        let accepted = [Acceptance { image: "accepted.png".into(), edited: None }];
        accept(d, "txt", &accepted, &mut Journal::open(d)).unwrap();
        let listed = unreviewed_uncaptioned(d, "txt").unwrap();
        assert_eq!(listed, [PathBuf::from("blank.png"), PathBuf::from("missing.png")]);
        Journal::open(d).undo().unwrap();
        assert_eq!(unreviewed_uncaptioned(d, "txt").unwrap().len(), 3, "undone: its draft awaits review again");
    }

    #[test]
    fn a_draft_is_normalized_and_gets_the_trigger() {
        let vocabulary = crate::captions::vocabulary::Vocabulary::parse("[terms]\nmug = [\"cup\"]\n").unwrap();
        let rules = Rules::new(&vocabulary, "ohwx").unwrap();
        let made = Draft::new("a.png".into(), " a cup on a table ", "BLIP", &rules);
        assert_eq!(made.text, "ohwx, a mug on a table");
        assert_eq!(made.raw, "a cup on a table");
        assert_eq!(Draft::new("a.png".into(), "ohwx on a table", "BLIP", &rules).text, "ohwx on a table");
    }

    #[test]
    fn a_broken_drafts_file_is_named_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::write(d.join(FILE), "{ not json").unwrap();
        let error = format!("{:#}", update(d, |_| Ok(())).unwrap_err());
        assert!(error.contains(FILE), "{error}");
        assert_eq!(fs::read_to_string(d.join(FILE)).unwrap(), "{ not json");
    }
}
