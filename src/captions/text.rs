//! The caption model: comma-separated parts (tags or free sentences), each
//! made of words with their places in the original text, so an edit can
//! replace exactly the words it must and keep everything else as written.

use std::ops::Range;

/// The parts of a caption: split at commas, trimmed, empty ones dropped.
pub fn parts(text: &str) -> Vec<&str> {
    text.split(',').map(str::trim).filter(|part| !part.is_empty()).collect()
}

/// The parts joined back the way captions are written: `a, b, c`.
pub fn join<S: AsRef<str>>(parts: &[S]) -> String {
    parts.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(", ")
}

/// A word of a text: letters, digits, apostrophes, hyphens and underscores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    /// Lower-cased, for matching.
    pub lower: String,
    /// Where it is in the text, in bytes.
    pub span: Range<usize>,
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '\'' || c == '-' || c == '_'
}

/// The words of `text` in order.
pub fn words(text: &str) -> Vec<Word> {
    let mut words = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices().chain(std::iter::once((text.len(), ' '))) {
        match (start, is_word_char(c)) {
            (None, true) => start = Some(i),
            (Some(s), false) => {
                words.push(Word { lower: text[s..i].to_lowercase(), span: s..i });
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_words_and_tidying() {
        assert_eq!(parts(" a mug ,, on a table,"), ["a mug", "on a table"]);
        let found = words("A teal-blue mug's handle.");
        assert_eq!(found.iter().map(|w| w.lower.as_str()).collect::<Vec<_>>(), ["a", "teal-blue", "mug's", "handle"]);
        assert_eq!(&"A teal-blue mug's handle."[found[2].span.clone()], "mug's");
        assert_eq!(tidy("a   mug  .  on\ta table ;"), "a mug. on a table;");
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
