//! The caption model: comma-separated parts (tags or free sentences), each
//! made of words with their places in the original text, so an edit can
//! replace exactly the words it must and keep everything else as written.

use std::borrow::Cow;
use std::ops::Range;

/// The parts of a caption: split at commas, trimmed, empty ones dropped.
pub fn parts(text: &str) -> Vec<&str> {
    text.split(',').map(str::trim).filter(|part| !part.is_empty()).collect()
}

/// A phrase's lower-case words joined by single spaces, as alias and banned
/// phrases are keyed.
pub fn phrase_key(words: &[Word]) -> String {
    let mut key = String::new();
    for word in words {
        if !key.is_empty() {
            key.push(' ');
        }
        key.push_str(&word.lower);
    }
    key
}

/// The parts joined back the way captions are written: `a, b, c`.
pub fn join<S: AsRef<str>>(parts: &[S]) -> String {
    parts.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(", ")
}

/// A word of a text: letters, digits, apostrophes, hyphens and underscores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word<'a> {
    /// Lower-cased, for matching (borrowed from the text when it already is).
    pub lower: Cow<'a, str>,
    /// Where it is in the text, in bytes.
    pub span: Range<usize>,
}

/// Letters, digits, apostrophes, hyphens and underscores make up words.
pub fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '\'' || c == '-' || c == '_'
}

/// The words of `text` in order.
pub fn words(text: &str) -> Vec<Word<'_>> {
    let mut words = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices().chain(std::iter::once((text.len(), ' '))) {
        match (start, is_word_char(c)) {
            (None, true) => start = Some(i),
            (Some(s), false) => {
                let word = &text[s..i];
                let lower = if word.chars().any(char::is_uppercase) {
                    Cow::Owned(word.to_lowercase())
                } else {
                    Cow::Borrowed(word)
                };
                words.push(Word { lower, span: s..i });
                start = None;
            }
            _ => {}
        }
    }
    words
}

/// Collapses runs of whitespace and removes spaces before closing punctuation.
pub fn tidy(part: &str) -> String {
    let mut out = String::with_capacity(part.len());
    for word in part.split_whitespace() {
        let glued = word.starts_with(['.', '!', '?', ';', ':', ')']);
        if !out.is_empty() && !glued {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// Words that carry no content of their own.
pub const STOPWORDS: &[&str] = &[
    "a", "an", "the", "of", "on", "in", "at", "with", "and", "or", "to", "from", "by", "for", "is", "are", "its", "it",
    "this", "that", "some", "very", "into", "onto", "over", "under", "near", "behind", "front",
];

/// Nouns that say nothing about what is distinct in an image.
pub const GENERIC_WORDS: &[&str] =
    &["photo", "photograph", "image", "picture", "pic", "object", "thing", "item", "stuff", "something", "shot"];

/// How a word's regular plural is made: how many letters to drop, what to add.
fn plural_rule(lower: &str) -> (usize, &'static str) {
    if lower.ends_with(['s', 'x', 'z']) || lower.ends_with("ch") || lower.ends_with("sh") {
        (0, "es")
    } else if lower.ends_with('y') && !lower[..lower.len() - 1].ends_with(['a', 'e', 'i', 'o', 'u']) {
        (1, "ies")
    } else {
        (0, "s")
    }
}

/// The plural forms a lower-case word is matched in: the regular one, and
/// the naive `+s` people also write (`mug` → `mugs`, `berry` → `berries`, `berrys`).
pub fn plurals(word: &str) -> Vec<String> {
    let (drop, suffix) = plural_rule(word);
    let regular = format!("{}{suffix}", &word[..word.len() - drop]);
    let naive = format!("{word}s");
    if regular == naive { vec![regular] } else { vec![regular, naive] }
}

/// The plural to write for `term`: its last word pluralised.
pub fn plural_of(term: &str) -> String {
    let (drop, suffix) = plural_rule(&term.to_lowercase());
    format!("{}{suffix}", &term[..term.len() - drop])
}

/// A tag operation across captions: add, remove or replace a whole part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagEdit {
    Add(String),
    Remove(String),
    Replace { old: String, new: String },
}

impl TagEdit {
    /// Reads `+tag`, `-tag` or `old => new`.
    pub fn parse(command: &str) -> Option<Self> {
        let command = command.trim();
        if let Some((old, new)) = command.split_once("=>") {
            let (old, new) = (old.trim(), new.trim());
            return (!old.is_empty() && !new.is_empty() && !new.contains(','))
                .then(|| Self::Replace { old: old.into(), new: new.into() });
        }
        let (sign, tag) = command.split_at(command.chars().next()?.len_utf8());
        let tag = tag.trim();
        match sign {
            _ if tag.is_empty() || tag.contains(',') => None,
            "+" => Some(Self::Add(tag.into())),
            "-" => Some(Self::Remove(tag.into())),
            _ => None,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Self::Add(tag) => format!("add tag \"{tag}\""),
            Self::Remove(tag) => format!("remove tag \"{tag}\""),
            Self::Replace { old, new } => format!("replace tag \"{old}\" with \"{new}\""),
        }
    }

    /// The caption with the edit made; unchanged when it does not apply.
    pub fn apply(&self, caption: &str) -> String {
        let mut parts: Vec<String> = parts(caption).into_iter().map(String::from).collect();
        let same = |part: &String, tag: &str| part.eq_ignore_ascii_case(tag);
        match self {
            Self::Add(tag) if !parts.iter().any(|p| same(p, tag)) => parts.push(tag.clone()),
            Self::Add(_) => return caption.to_string(),
            Self::Remove(tag) if parts.iter().any(|p| same(p, tag)) => parts.retain(|p| !same(p, tag)),
            Self::Replace { old, new } if parts.iter().any(|p| same(p, old)) => {
                for part in &mut parts {
                    if same(part, old) {
                        *part = new.clone();
                    }
                }
            }
            _ => return caption.to_string(),
        }
        join(&parts)
    }
}

/// A piece of a word diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiffPiece {
    Same(String),
    Removed(String),
    Added(String),
}

/// The word-level difference between two captions (longest common
/// subsequence of whitespace-separated words; captions are short).
pub fn word_diff(before: &str, after: &str) -> Vec<DiffPiece> {
    let (a, b): (Vec<&str>, Vec<&str>) = (before.split_whitespace().collect(), after.split_whitespace().collect());
    // lcs[i][j]: the common length of a[i..] and b[j..].
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let mut pieces: Vec<DiffPiece> = Vec::new();
    let mut push = |piece: DiffPiece| {
        // Neighbouring words of one kind read better as one piece.
        match (pieces.last_mut(), &piece) {
            (Some(DiffPiece::Same(text)), DiffPiece::Same(word))
            | (Some(DiffPiece::Removed(text)), DiffPiece::Removed(word))
            | (Some(DiffPiece::Added(text)), DiffPiece::Added(word)) => {
                text.push(' ');
                text.push_str(word);
            }
            _ => pieces.push(piece),
        }
    };
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            push(DiffPiece::Same(a[i].to_string()));
            (i, j) = (i + 1, j + 1);
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            push(DiffPiece::Removed(a[i].to_string()));
            i += 1;
        } else {
            push(DiffPiece::Added(b[j].to_string()));
            j += 1;
        }
    }
    pieces
}

/// The diff in plain text: `a teal [-cup-]{+mug+} with`.
pub fn diff_text(before: &str, after: &str) -> String {
    let pieces: Vec<String> = word_diff(before, after)
        .into_iter()
        .map(|piece| match piece {
            DiffPiece::Same(text) => text,
            DiffPiece::Removed(text) => format!("[-{text}-]"),
            DiffPiece::Added(text) => format!("{{+{text}+}}"),
        })
        .collect();
    pieces.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_words_and_tidying() {
        assert_eq!(parts(" a mug ,, on a table,"), ["a mug", "on a table"]);
        let found = words("A teal-blue mug's handle.");
        assert_eq!(found.iter().map(|w| w.lower.as_ref()).collect::<Vec<_>>(), ["a", "teal-blue", "mug's", "handle"]);
        assert_eq!(&"A teal-blue mug's handle."[found[2].span.clone()], "mug's");
        assert_eq!(tidy("a   mug  .  on\ta table ;"), "a mug. on a table;");
    }

    #[test]
    fn word_diffs_mark_only_what_changed() {
        assert_eq!(diff_text("a teal cup with a star", "a teal mug with a star"), "a teal [-cup-] {+mug+} with a star");
        assert_eq!(diff_text("a mug", "zeltmug, a mug"), "{+zeltmug,+} a mug");
    }

    #[test]
    fn tag_edits_touch_whole_parts_only() {
        let add = TagEdit::parse("+ red apple").unwrap();
        assert_eq!(add.apply("zeltmug, a mug"), "zeltmug, a mug, red apple");
        assert_eq!(add.apply("zeltmug, Red Apple"), "zeltmug, Red Apple", "already there");
        let remove = TagEdit::parse("-a mug").unwrap();
        assert_eq!(remove.apply("zeltmug, a mug, a mug on a table"), "zeltmug, a mug on a table");
        let replace = TagEdit::parse("soft light => window light").unwrap();
        assert_eq!(
            replace.apply("zeltmug, soft light, soft light from the left"),
            "zeltmug, window light, soft light from the left"
        );
        assert_eq!(TagEdit::parse("tag"), None);
        assert_eq!(TagEdit::parse("+a, b"), None);
    }

    #[test]
    fn plural_forms() {
        assert_eq!(plurals("mug"), ["mugs"]);
        assert_eq!(plurals("glass"), ["glasses", "glasss"]);
        assert_eq!(plurals("berry"), ["berries", "berrys"]);
        assert_eq!(plural_of("running shoe"), "running shoes");
        assert_eq!(plural_of("glass"), "glasses");
        assert_eq!(plural_of("berry"), "berries");
    }
}
