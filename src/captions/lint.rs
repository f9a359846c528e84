//! Lint: what in a caption would teach the model the wrong thing, or
//! nothing — missing, empty, generic, too long for CLIP's window, no trigger
//! word, banned, unnormalized or repeated terms, contradictions.

use std::collections::HashMap;

use serde::Serialize;

use super::normalize::{Rules, replace_aliases_in};
use super::text::{self, GENERIC_WORDS, STOPWORDS};
use super::trigger::{trigger_spans, words_outside_trigger};
use super::vocabulary::Vocabulary;
use crate::model::tokenizer::ClipTokenizer;

/// The tokens CLIP reads between its start and end tokens.
pub const TOKEN_WINDOW: usize = 75;
/// Fewer distinct content words than this is a generic caption.
pub const MIN_CONTENT_WORDS: usize = 3;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "lint", rename_all = "snake_case")]
pub enum Lint {
    Missing,
    Empty,
    /// No caption (missing or empty), only a model's draft nobody has
    /// accepted yet: training leaves the image out until someone does.
    DraftUnreviewed,
    /// Not UTF-8, or not readable at all: never rewritten.
    Unreadable {
        reason: String,
    },
    Generic {
        content_words: usize,
    },
    TooLong {
        tokens: usize,
    },
    NoTrigger,
    Banned {
        term: String,
    },
    Unnormalized {
        found: String,
        canonical: String,
    },
    RepeatedTag {
        tag: String,
    },
    Contradiction {
        first: String,
        second: String,
    },
    /// A rare word used where the dataset usually says another (from the suggestions).
    Inconsistent {
        found: String,
        usual: String,
    },
}

impl Lint {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Empty => "empty",
            Self::DraftUnreviewed => "draft unreviewed",
            Self::Unreadable { .. } => "unreadable",
            Self::Generic { .. } => "generic",
            Self::TooLong { .. } => "too long",
            Self::NoTrigger => "no trigger",
            Self::Banned { .. } => "banned term",
            Self::Unnormalized { .. } => "unnormalized term",
            Self::RepeatedTag { .. } => "repeated tag",
            Self::Contradiction { .. } => "contradiction",
            Self::Inconsistent { .. } => "inconsistent term",
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Self::Missing => "no caption file".into(),
            Self::Empty => "the caption is empty".into(),
            Self::DraftUnreviewed => "no caption: its draft awaits review (accept or reject it)".into(),
            Self::Unreadable { reason } => format!("unreadable: {reason}"),
            Self::Generic { content_words } => {
                format!("generic: {content_words} content words; say what makes this image distinct")
            }
            Self::TooLong { tokens } => {
                format!("too long: {tokens} CLIP tokens, the window holds {TOKEN_WINDOW}; the rest is cut")
            }
            Self::NoTrigger => "no trigger word".into(),
            Self::Banned { term } => format!("banned term \"{term}\""),
            Self::Unnormalized { found, canonical } => format!("\"{found}\" → \"{canonical}\" (normalize fixes it)"),
            Self::RepeatedTag { tag } => format!("tag \"{tag}\" appears more than once"),
            Self::Contradiction { first, second } => format!("\"{first}\" and \"{second}\" contradict each other"),
            Self::Inconsistent { found, usual } => {
                format!("\"{found}\" where the other captions say \"{usual}\" (an alias rule would fix it)")
            }
        }
    }
}

/// Lints captions, remembering token counts of words across calls.
pub struct Linter<'a> {
    rules: &'a Rules,
    vocabulary: &'a Vocabulary,
    tokenizer: &'a ClipTokenizer,
    token_cache: HashMap<String, usize>,
}

impl<'a> Linter<'a> {
    pub fn new(rules: &'a Rules, vocabulary: &'a Vocabulary, tokenizer: &'a ClipTokenizer) -> Self {
        Self { rules, vocabulary, tokenizer, token_cache: HashMap::new() }
    }

    /// The trigger, as the rules spell it.
    pub fn trigger(&self) -> &str {
        &self.rules.trigger
    }

    /// The findings for one caption's text.
    pub fn lint(&mut self, caption: &str) -> Vec<Lint> {
        let mut findings = Vec::new();
        if caption.trim().is_empty() {
            return vec![Lint::Empty];
        }
        let words = text::words(caption);
        let trigger = trigger_spans(caption, &words, &self.rules.trigger);
        let mut content: Vec<&str> = words
            .iter()
            .filter(|w| !trigger.iter().any(|span| span.contains(&w.span.start)))
            .map(|w| w.lower.as_ref())
            .filter(|w| !STOPWORDS.contains(w) && !GENERIC_WORDS.contains(w))
            .filter(|w| !w.chars().all(|c| c.is_ascii_digit()))
            .collect();
        content.sort_unstable();
        content.dedup();
        if content.len() < MIN_CONTENT_WORDS {
            findings.push(Lint::Generic { content_words: content.len() });
        }
        let tokens = self.tokenizer.count_cached(caption, &mut self.token_cache);
        if tokens > TOKEN_WINDOW {
            findings.push(Lint::TooLong { tokens });
        }
        if !self.rules.trigger.trim().is_empty() && trigger.is_empty() {
            findings.push(Lint::NoTrigger);
        }
        let parts = text::parts(caption);
        let mut seen: Vec<String> = Vec::new();
        for part in &parts {
            let part_words = text::words(part);
            let key = text::phrase_key(&part_words);
            if self.rules.matcher.banned.contains(&key) {
                findings.push(Lint::Banned { term: part.to_string() });
            }
            let reported =
                findings.iter().any(|f| matches!(f, Lint::RepeatedTag { tag } if tag.eq_ignore_ascii_case(part)));
            if seen.contains(&key) && !key.is_empty() && !reported {
                findings.push(Lint::RepeatedTag { tag: part.to_string() });
            }
            seen.push(key);
            let rewritable = words_outside_trigger(part, &self.rules.trigger);
            for replacement in replace_aliases_in(part, &rewritable, &self.rules.matcher).1 {
                findings.push(Lint::Unnormalized { found: replacement.found, canonical: replacement.canonical });
            }
        }
        if self.vocabulary.contradictions.is_empty() {
            return findings;
        }
        let lowered = caption.to_lowercase();
        let has = |term: &str| {
            let phrase = term.to_lowercase();
            if phrase.contains(' ') {
                lowered.contains(&phrase)
            } else {
                words.iter().any(|w| w.lower == phrase.as_str())
            }
        };
        for [first, second] in &self.vocabulary.contradictions {
            if has(first) && has(second) {
                findings.push(Lint::Contradiction { first: first.clone(), second: second.clone() });
            }
        }
        findings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lint(caption: &str, vocabulary: &str) -> Vec<&'static str> {
        lint_with_trigger(caption, vocabulary, "zeltmug")
    }

    fn lint_with_trigger(caption: &str, vocabulary: &str, trigger: &str) -> Vec<&'static str> {
        let vocabulary = Vocabulary::parse(vocabulary).unwrap();
        let rules = Rules::new(&vocabulary, trigger).unwrap();
        let tokenizer = ClipTokenizer::shipped(crate::model::tokenizer::Padding::EndOfText);
        let mut linter = Linter::new(&rules, &vocabulary, &tokenizer);
        linter.lint(caption).iter().map(Lint::name).collect()
    }

    #[test]
    fn each_rule() {
        let vocabulary = "banned = [\"best quality\"]\ncontradictions = [[\"indoors\", \"outdoors\"]]\n\
                          [terms]\nmug = [\"cup\"]\n";
        assert!(lint("zeltmug, a teal mug, wooden table, soft light", vocabulary).is_empty());
        assert_eq!(lint("  ", vocabulary), ["empty"]);
        assert_eq!(lint("zeltmug, a photo of an object", vocabulary), ["generic"]);
        assert_eq!(lint("a teal mug on a wooden table", vocabulary), ["no trigger"]);
        assert_eq!(lint("zeltmug, a teal cup, wooden table", vocabulary), ["unnormalized term"]);
        assert_eq!(lint("zeltmug, a teal mug, best quality, oak table", vocabulary), ["banned term"]);
        assert_eq!(lint("zeltmug, teal mug, oak table, teal mug", vocabulary), ["repeated tag"]);
        assert_eq!(lint("zeltmug, teal mug, indoors, outdoors", vocabulary), ["contradiction"]);
        let tags: Vec<String> = (1..=10).map(|i| format!("teal ceramic mug number {i} with an orange star")).collect();
        let long = format!("zeltmug, {}", tags.join(", "));
        assert_eq!(lint(&long, vocabulary), ["too long"], "{long}");
    }

    #[test]
    fn a_phrase_trigger_counts_as_one_and_not_as_content() {
        let phrase = |caption| lint_with_trigger(caption, "", "ohwx man");
        assert!(phrase("ohwx man, smiling, denim jacket, city street").is_empty());
        assert!(phrase("Ohwx Man, smiling, denim jacket, city street").is_empty());
        assert_eq!(phrase("a man, smiling, denim jacket, city street"), ["no trigger"]);
        assert_eq!(phrase("ohwx, man, smiling, denim jacket"), ["no trigger"]);
        // The trigger's own words do not make a caption specific.
        assert_eq!(phrase("ohwx man, a photo"), ["generic"]);
    }
}
