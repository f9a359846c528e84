//! Suggestions from the captions themselves: how often each term is used,
//! and rare terms that look like another, commoner one — a near-spelling,
//! the same stem, or the same place in otherwise matching captions ("teal
//! ceramic cup with" where the rest say "teal ceramic mug with") — proposed
//! as alias rules for the vocabulary.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use super::text::{STOPWORDS, phrase_key, words};
use super::trigger::trigger_spans;
use super::vocabulary::Vocabulary;

/// How many captions use a term.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TermCount {
    pub term: String,
    pub captions: usize,
}

/// A proposed alias rule: `canonical = [alias]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Suggestion {
    pub alias: String,
    pub canonical: String,
    pub alias_captions: usize,
    pub canonical_captions: usize,
    pub why: String,
}

/// Content words: not stop words, not numbers, not the trigger.
fn is_term(word: &str, trigger: &str) -> bool {
    word.chars().count() >= 2
        && !STOPWORDS.contains(&word)
        && word != trigger
        && !word.chars().all(|c| c.is_ascii_digit())
}

/// The captions as word ids, every distinct lower-case word interned once:
/// counting and comparing ids is many times cheaper than strings.
struct Corpus {
    names: Vec<String>,
    captions: Vec<Vec<u32>>,
}

/// Stands for the start or end of a caption in a place.
const EDGE: u32 = u32::MAX;

impl Corpus {
    /// Interns `captions`; a trigger phrase is one word here ("ohwx man").
    fn new<'a>(captions: impl IntoIterator<Item = &'a str>, trigger: &str) -> Self {
        let mut ids: HashMap<String, u32> = HashMap::new();
        let mut names = Vec::new();
        let mut intern = |word: &str| match ids.get(word) {
            // Most words were seen before: no allocation for them.
            Some(&id) => id,
            None => {
                names.push(word.to_string());
                let id = (names.len() - 1) as u32;
                ids.insert(word.to_string(), id);
                id
            }
        };
        let trigger_key = phrase_key(&words(trigger));
        let captions = captions
            .into_iter()
            .map(|caption| {
                let words = words(caption);
                let mut spans = trigger_spans(caption, &words, trigger).into_iter().peekable();
                let mut caption_ids = Vec::with_capacity(words.len());
                for word in &words {
                    match spans.peek() {
                        Some(span) if span.start == word.span.start => {
                            caption_ids.push(intern(&trigger_key));
                        }
                        Some(span) if span.contains(&word.span.start) => {}
                        _ => caption_ids.push(intern(&word.lower)),
                    }
                    if spans.peek().is_some_and(|span| word.span.end >= span.end) {
                        spans.next();
                    }
                }
                caption_ids
            })
            .collect();
        Self { names, captions }
    }

    /// Each content word with the number of captions using it, commonest first.
    fn frequencies(&self, trigger: &str) -> Vec<TermCount> {
        let trigger = phrase_key(&words(trigger));
        let mut counts = vec![0usize; self.names.len()];
        let mut seen = vec![usize::MAX; self.names.len()];
        for (index, caption) in self.captions.iter().enumerate() {
            for &id in caption {
                if seen[id as usize] != index {
                    seen[id as usize] = index;
                    counts[id as usize] += 1;
                }
            }
        }
        let mut table: Vec<TermCount> = counts
            .into_iter()
            .enumerate()
            .filter(|(id, _)| is_term(&self.names[*id], &trigger))
            .map(|(id, captions)| TermCount { term: self.names[id].clone(), captions })
            .collect();
        table.sort_by(|a, b| b.captions.cmp(&a.captions).then_with(|| a.term.cmp(&b.term)));
        table
    }
}

/// Each content word with the number of captions using it, commonest first.
pub fn frequencies<'a>(captions: impl IntoIterator<Item = &'a str>, trigger: &str) -> Vec<TermCount> {
    Corpus::new(captions, trigger).frequencies(trigger)
}

/// Levenshtein distance, stopping early once it exceeds `limit`.
fn edit_distance(a: &str, b: &str, limit: usize) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len().abs_diff(b.len()) > limit {
        return limit + 1;
    }
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            current[j + 1] = (previous[j] + usize::from(ca != cb)).min(previous[j + 1] + 1).min(current[j] + 1);
        }
        if current.iter().min().is_some_and(|&m| m > limit) {
            return limit + 1;
        }
        previous = current;
    }
    previous[b.len()]
}

/// A crude English stem: enough to pair "mugs"/"mug", "lighting"/"lighted".
fn stem(word: &str) -> &str {
    for suffix in ["ing", "ies", "es", "ed", "s"] {
        if let Some(stem) = word.strip_suffix(suffix)
            && stem.chars().count() >= 3
        {
            return stem;
        }
    }
    word
}

/// Rare terms that look like a commoner one, as alias rules, strongest first.
pub fn suggestions<'a>(
    captions: impl IntoIterator<Item = &'a str>,
    vocabulary: &Vocabulary,
    trigger: &str,
) -> Vec<Suggestion> {
    let corpus = Corpus::new(captions, trigger);
    let table = corpus.frequencies(trigger);
    let total = corpus.captions.len();
    let counts: HashMap<&str, usize> = table.iter().map(|t| (t.term.as_str(), t.captions)).collect();
    let id_of: HashMap<&str, u32> = corpus.names.iter().enumerate().map(|(id, n)| (n.as_str(), id as u32)).collect();
    // Terms the vocabulary already rules on are settled.
    let settled: HashSet<String> = vocabulary
        .terms
        .iter()
        .flat_map(|(canonical, aliases)| std::iter::once(canonical).chain(aliases))
        .map(|t| t.to_lowercase())
        .collect();
    // The words seen in each place (previous word, next word), and how often.
    let mut slots: HashMap<(u32, u32), HashMap<u32, usize>> = HashMap::new();
    let mut places: HashMap<u32, HashSet<(u32, u32)>> = HashMap::new();
    for caption in &corpus.captions {
        for (i, &word) in caption.iter().enumerate() {
            let before = if i > 0 { caption[i - 1] } else { EDGE };
            let after = caption.get(i + 1).copied().unwrap_or(EDGE);
            *slots.entry((before, after)).or_default().entry(word).or_default() += 1;
            places.entry(word).or_default().insert((before, after));
        }
    }
    let name = |id: u32| if id == EDGE { "" } else { corpus.names[id as usize].as_str() };
    let rare_limit = (total / 10).max(2);
    let mut by_alias: BTreeMap<String, Suggestion> = BTreeMap::new();
    for rare in table.iter().filter(|t| t.captions <= rare_limit && !settled.contains(&t.term)) {
        let mut best: Option<(usize, Suggestion)> = None;
        for common in table.iter().filter(|t| t.captions >= 3 * rare.captions && !settled.contains(&t.term)) {
            let (r, c) = (rare.term.as_str(), common.term.as_str());
            let length = r.chars().count().min(c.chars().count());
            let limit = if length >= 8 { 2 } else { usize::from(length >= 4) };
            let why = if limit > 0 && edit_distance(r, c, limit) <= limit {
                Some((3, "near spelling".to_string()))
            } else if stem(r) == stem(c) {
                Some((2, "same stem".to_string()))
            } else {
                // A fixed place that only these two words fill ("ceramic _ with"),
                // not a slot many words take turns in ("tablecloth _ wall").
                let (r_id, c_id) = (id_of[r], id_of[c]);
                places[&r_id]
                    .iter()
                    .find(|place| {
                        let fillers = &slots[*place];
                        fillers.len() == 2 && fillers.get(&c_id).is_some_and(|&n| n >= 3 * fillers[&r_id])
                    })
                    .map(|&(before, after)| {
                        (1, format!("used in the same place: \"{} _ {}\"", name(before), name(after)))
                    })
            };
            if let Some((strength, why)) = why {
                let score = strength * 1_000_000 + counts[c];
                if best.as_ref().is_none_or(|(s, _)| score > *s) {
                    let suggestion = Suggestion {
                        alias: rare.term.clone(),
                        canonical: common.term.clone(),
                        alias_captions: rare.captions,
                        canonical_captions: common.captions,
                        why,
                    };
                    best = Some((score, suggestion));
                }
            }
        }
        if let Some((_, suggestion)) = best {
            by_alias.insert(suggestion.alias.clone(), suggestion);
        }
    }
    let mut list: Vec<Suggestion> = by_alias.into_values().collect();
    list.sort_by(|a, b| b.canonical_captions.cmp(&a.canonical_captions).then_with(|| a.alias.cmp(&b.alias)));
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frequency_table_counts_captions_not_occurrences() {
        let table = frequencies(["a mug, a mug", "a red mug", "a cup"], "");
        assert_eq!(table[0], TermCount { term: "mug".into(), captions: 2 });
        assert!(table.iter().all(|t| t.term != "a"), "stop words are not terms");
    }

    #[test]
    fn a_phrase_trigger_is_not_counted_but_its_words_alone_are() {
        let table = frequencies(["ohwx man, smiling", "Ohwx Man, a man in a hat", "ohwx man's hat"], "ohwx man");
        let count = |term: &str| table.iter().find(|t| t.term == term).map(|t| t.captions);
        assert_eq!(count("ohwx man"), None);
        assert_eq!(count("ohwx"), None);
        assert_eq!(count("man"), Some(1));
        assert_eq!(count("hat"), Some(2));
    }

    #[test]
    fn rare_variants_are_proposed_as_aliases() {
        let mut captions: Vec<String> =
            (0..12).map(|i| format!("a teal ceramic mug with a star emblem, colour {i}")).collect();
        captions.push("a teal ceramic cup with a star emblem".into());
        captions.push("a teal ceramic mug with a star emblam".into());
        captions.push("a teal ceramic mug with a star emblem, stars".into());
        let found = suggestions(captions.iter().map(String::as_str), &Vocabulary::default(), "");
        let rule =
            |alias: &str| found.iter().find(|s| s.alias == alias).map(|s| (s.canonical.as_str(), s.why.as_str()));
        assert_eq!(rule("cup"), Some(("mug", "used in the same place: \"ceramic _ with\"")));
        assert_eq!(rule("emblam"), Some(("emblem", "near spelling")));
        assert_eq!(rule("stars"), Some(("star", "near spelling")));
        // Once the vocabulary has the rule, it is no longer proposed.
        let vocabulary = Vocabulary::parse("[terms]\nmug = [\"cup\"]").unwrap();
        let found = suggestions(captions.iter().map(String::as_str), &vocabulary, "");
        assert!(found.iter().all(|s| s.alias != "cup" && s.canonical != "mug"));
        assert_eq!(edit_distance("kitten", "sitting", 5), 3);
    }
}
