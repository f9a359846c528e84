//! Suggestions from the captions themselves: how often each term is used,
//! and rare terms that look like another, commoner one — a near-spelling,
//! the same stem, or the same place in otherwise matching captions ("teal
//! ceramic cup with" where the rest say "teal ceramic mug with") — proposed
//! as alias rules for the vocabulary.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use super::text::{STOPWORDS, words};
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

/// Each content word with the number of captions using it, commonest first.
pub fn frequencies<'a>(captions: impl IntoIterator<Item = &'a str>, trigger: &str) -> Vec<TermCount> {
    let trigger = trigger.to_lowercase();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for caption in captions {
        let unique: HashSet<String> = words(caption).into_iter().map(|w| w.lower).collect();
        for word in unique.into_iter().filter(|w| is_term(w, &trigger)) {
            *counts.entry(word).or_default() += 1;
        }
    }
    let mut table: Vec<TermCount> = counts.into_iter().map(|(term, captions)| TermCount { term, captions }).collect();
    table.sort_by(|a, b| b.captions.cmp(&a.captions).then_with(|| a.term.cmp(&b.term)));
    table
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
    captions: impl IntoIterator<Item = &'a str> + Clone,
    vocabulary: &Vocabulary,
    trigger: &str,
) -> Vec<Suggestion> {
    let table = frequencies(captions.clone(), trigger);
    let total: usize = captions.clone().into_iter().count();
    let counts: HashMap<&str, usize> = table.iter().map(|t| (t.term.as_str(), t.captions)).collect();
    // Terms the vocabulary already rules on are settled.
    let settled: HashSet<String> = vocabulary
        .terms
        .iter()
        .flat_map(|(canonical, aliases)| std::iter::once(canonical).chain(aliases))
        .map(|t| t.to_lowercase())
        .collect();
    // The places each word is used: (previous word, next word).
    let mut places: HashMap<String, HashSet<(String, String)>> = HashMap::new();
    for caption in captions {
        let found = words(caption);
        for (i, word) in found.iter().enumerate() {
            let before = if i > 0 { found[i - 1].lower.clone() } else { String::new() };
            let after = found.get(i + 1).map(|w| w.lower.clone()).unwrap_or_default();
            places.entry(word.lower.clone()).or_default().insert((before, after));
        }
    }
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
                let (rare_places, common_places) = (&places[r], &places[c]);
                let shared = rare_places.iter().filter(|p| common_places.contains(*p)).count();
                // Most of the rare word's uses sit where the common one usually stands.
                (shared * 2 >= rare_places.len() && shared > 0).then(|| {
                    let (before, after) = rare_places.iter().find(|p| common_places.contains(*p)).expect("shared");
                    (1, format!("used in the same place: \"{before} _ {after}\""))
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
