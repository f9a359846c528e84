//! Finding the trigger in a caption. A trigger may be one word (`zeltmug`)
//! or a kohya-style class phrase (`ohwx man`): its words are matched as
//! whole words, in order, in any case, with only whitespace between them,
//! so `ohwx man` is found in "Ohwx  Man, smiling" but not in "ohwx, man"
//! or "ohwx manly". A possessive ("zeltmug's handle") mentions it too.

use std::ops::Range;

use super::text::{self, Word};

/// Where the trigger stands in `text` (whose words are `words`), as byte
/// spans covering the phrase (a possessive `'s` left outside).
pub fn trigger_spans(text: &str, words: &[Word], trigger: &str) -> Vec<Range<usize>> {
    let key = text::words(trigger);
    let mut spans = Vec::new();
    if key.is_empty() {
        return spans;
    }
    let mut i = 0;
    while i + key.len() <= words.len() {
        let candidate = &words[i..i + key.len()];
        let last = key.len() - 1;
        let matches = candidate.iter().zip(&key).enumerate().all(|(k, (word, wanted))| {
            let same = word.lower == wanted.lower;
            let possessive = k == last && word.lower.strip_suffix("'s") == Some(wanted.lower.as_ref());
            let joined = k == 0 || text[candidate[k - 1].span.end..word.span.start].trim().is_empty();
            (same || possessive) && joined
        });
        if matches {
            let word = &candidate[last];
            let end = if word.lower == key[last].lower { word.span.end } else { word.span.end - "'s".len() };
            spans.push(candidate[0].span.start..end);
            i += key.len();
        } else {
            i += 1;
        }
    }
    spans
}

/// The words of `text` but the trigger's: vocabulary rules never rewrite or
/// judge the trigger's own words ("man" in "ohwx man").
pub fn words_outside_trigger<'a>(text: &'a str, trigger: &str) -> Vec<Word<'a>> {
    let words = text::words(text);
    let spans = trigger_spans(text, &words, trigger);
    words.into_iter().filter(|word| !spans.iter().any(|span| span.contains(&word.span.start))).collect()
}

/// Whether `caption` mentions the trigger (never, for an empty trigger).
pub fn mentions_trigger(caption: &str, trigger: &str) -> bool {
    !trigger.trim().is_empty() && !trigger_spans(caption, &text::words(caption), trigger).is_empty()
}

/// Whether the comma part `part` is the trigger and nothing else.
pub fn is_trigger(part: &str, trigger: &str) -> bool {
    let part = part.trim();
    trigger_spans(part, &text::words(part), trigger).first() == Some(&(0..part.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_word_trigger_must_be_a_whole_word() {
        assert!(mentions_trigger("Zeltmug, a mug", "zeltmug"));
        assert!(mentions_trigger("the zeltmug's handle", "zeltmug"));
        assert!(!mentions_trigger("zeltmugs on a table", "zeltmug"));
        assert!(!mentions_trigger("anything", ""));
        assert!(!mentions_trigger("anything", "  "));
    }

    #[test]
    fn a_phrase_trigger_is_matched_as_one_unit() {
        assert!(mentions_trigger("ohwx man, smiling", "ohwx man"));
        assert!(mentions_trigger("a photo of OHWX  Man in a park", "ohwx man"));
        assert!(!mentions_trigger("ohwx, man", "ohwx man"), "a comma breaks the phrase");
        assert!(!mentions_trigger("ohwx manly", "ohwx man"));
        assert!(!mentions_trigger("man ohwx", "ohwx man"));
        assert!(!mentions_trigger("a man", "ohwx man"));
        let caption = "ohwx man, then Ohwx Man again";
        assert_eq!(trigger_spans(caption, &text::words(caption), "ohwx man"), [0..8, 15..23]);
        assert!(is_trigger(" Ohwx Man ", "ohwx man"));
        assert!(!is_trigger("ohwx man smiling", "ohwx man"));
    }
}
