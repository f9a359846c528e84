//! Normalization: aliases become their canonical term (whole words and
//! phrases, any case, singular or plural), banned and repeated tags go,
//! whitespace is tidied, the trigger word goes where the vocabulary says,
//! and everything else stays exactly as written. Normalizing twice gives
//! what normalizing once gave.

use super::text::{self, plural_of};
use super::trigger::{is_trigger, mentions_trigger, trigger_spans, words_outside_trigger};
use super::vocabulary::{CaseRule, Matcher, TriggerPosition, Vocabulary};

/// The vocabulary and trigger, ready to apply.
#[derive(Debug, Clone)]
pub struct Rules {
    pub matcher: Matcher,
    pub trigger: String,
    pub trigger_position: TriggerPosition,
    pub case: CaseRule,
}

impl Rules {
    pub fn new(vocabulary: &Vocabulary, trigger: &str) -> anyhow::Result<Self> {
        Ok(Self {
            matcher: vocabulary.matcher()?,
            // Written back as one phrase: "ohwx  man" in project.toml is "ohwx man".
            trigger: text::tidy(trigger),
            trigger_position: vocabulary.trigger_position,
            case: vocabulary.case,
        })
    }
}

/// An alias found in a caption, and what it becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replacement {
    pub found: String,
    pub canonical: String,
}

/// Replaces every alias in `part` by its canonical term, leaving the
/// trigger's words alone; returns the new text and what was replaced.
/// Longest phrases win; only words separated by whitespace form a phrase.
pub fn replace_aliases(part: &str, matcher: &Matcher, trigger: &str) -> (String, Vec<Replacement>) {
    replace_aliases_in(part, &words_outside_trigger(part, trigger), matcher)
}

/// `replace_aliases` with the part's words already found.
pub fn replace_aliases_in(part: &str, words: &[text::Word], matcher: &Matcher) -> (String, Vec<Replacement>) {
    if matcher.aliases.is_empty() {
        return (part.to_string(), Vec::new());
    }
    let mut out = String::with_capacity(part.len());
    let mut replaced = Vec::new();
    let (mut copied_to, mut i) = (0, 0);
    while i < words.len() {
        let mut key = String::new();
        let mut best = None;
        for k in 0..matcher.longest.min(words.len() - i) {
            if k > 0 {
                if !part[words[i + k - 1].span.end..words[i + k].span.start].trim().is_empty() {
                    break;
                }
                key.push(' ');
            }
            key.push_str(&words[i + k].lower);
            if let Some(target) = matcher.aliases.get(&key) {
                best = Some((k + 1, target));
            }
        }
        match best {
            Some((length, target)) => {
                let span = words[i].span.start..words[i + length - 1].span.end;
                let canonical = if target.plural { plural_of(&target.canonical) } else { target.canonical.clone() };
                out.push_str(&part[copied_to..span.start]);
                out.push_str(&canonical);
                replaced.push(Replacement { found: part[span.clone()].to_string(), canonical });
                copied_to = span.end;
                i += length;
            }
            None => i += 1,
        }
    }
    out.push_str(&part[copied_to..]);
    (out, replaced)
}

/// Lower-cases `part` but for the trigger, which keeps its spelling.
fn lower_keeping_trigger(part: &str, trigger: &str) -> String {
    let mut lowered = part.to_lowercase();
    let spans = trigger_spans(&lowered, &text::words(&lowered), trigger);
    for span in spans.into_iter().rev() {
        lowered.replace_range(span, trigger);
    }
    lowered
}

fn normalize_once(caption: &str, rules: &Rules) -> String {
    let mut parts: Vec<String> = Vec::new();
    for part in text::parts(caption) {
        let (mut part, _) = replace_aliases(&text::tidy(part), &rules.matcher, &rules.trigger);
        if rules.case == CaseRule::Lower {
            part = lower_keeping_trigger(&part, &rules.trigger);
        }
        let banned =
            !rules.matcher.banned.is_empty() && rules.matcher.banned.contains(&text::phrase_key(&text::words(&part)));
        let repeated = parts.iter().any(|p| p.eq_ignore_ascii_case(&part));
        if !banned && !repeated {
            parts.push(part);
        }
    }
    let trigger = &rules.trigger;
    // An empty caption stays empty: lint reports it; a lone trigger would hide it.
    if !trigger.is_empty() && rules.trigger_position == TriggerPosition::First && !parts.is_empty() {
        if let Some(at) = parts.iter().position(|p| is_trigger(p, trigger)) {
            parts.remove(at);
            parts.insert(0, trigger.clone());
        } else if !parts.iter().any(|p| mentions_trigger(p, trigger)) {
            parts.insert(0, trigger.clone());
        }
    }
    text::join(&parts)
}

/// The normalized caption. A caption that needs nothing comes back unchanged.
pub fn normalize(caption: &str, rules: &Rules) -> String {
    let mut current = normalize_once(caption, rules);
    if current == caption {
        return current;
    }
    // One more pass settles what the first one exposed (a tag repeated only
    // after its alias was replaced, say); the vocabulary refuses the rules
    // that could keep changing.
    for _ in 0..2 {
        let next = normalize_once(&current, rules);
        if next == current {
            break;
        }
        current = next;
    }
    if current == text::join(&text::parts(caption)) && caption.trim() == current {
        // Keep the exact original (a trailing newline, say) when nothing changed.
        return caption.to_string();
    }
    current
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(vocabulary: &str, trigger: &str) -> Rules {
        Rules::new(&Vocabulary::parse(vocabulary).unwrap(), trigger).unwrap()
    }

    #[test]
    fn phrases_plurals_and_case() {
        let rules = rules("[terms]\nsneaker = [\"trainers\", \"running shoe\"]\nmug = [\"cup\"]\n", "");
        assert_eq!(normalize("two Running Shoes on a mat", &rules), "two sneakers on a mat");
        assert_eq!(normalize("a running  shoe, cups", &rules), "a sneaker, mugs");
        assert_eq!(normalize("a Cup of tea", &rules), "a mug of tea");
        // Whole words only: "cupboard" and "teacup" are other words.
        assert_eq!(normalize("a cupboard, a teacup", &rules), "a cupboard, a teacup");
        // "running" then a full stop, then "shoe": not the phrase.
        assert_eq!(normalize("running. shoe", &rules), "running. shoe");
    }

    #[test]
    fn punctuation_duplicates_banned_and_trigger_placement() {
        let rules = rules("banned = [\"masterpiece\"]\n[terms]\nmug = [\"cup\"]\n", "zeltmug");
        assert_eq!(
            normalize("a teal mug ,  masterpiece,, a teal cup , Zeltmug ,a table .", &rules),
            "zeltmug, a teal mug, a table."
        );
        assert_eq!(normalize("a mug on a table", &rules), "zeltmug, a mug on a table", "missing trigger added first");
        assert_eq!(normalize("a zeltmug on a table", &rules), "a zeltmug on a table", "in a sentence it stays");
        assert_eq!(normalize("", &rules), "");
        let anywhere = Rules { trigger_position: TriggerPosition::Anywhere, ..rules.clone() };
        assert_eq!(normalize("a mug, zeltmug", &anywhere), "a mug, zeltmug");
        let lower = Rules { case: CaseRule::Lower, trigger: "ZeltMug".into(), ..rules };
        assert_eq!(normalize("A Teal MUG, zeltmug", &lower), "ZeltMug, a teal mug");
    }

    #[test]
    fn a_phrase_trigger_moves_and_keeps_its_spelling_as_one_unit() {
        let rules = rules("[terms]\nmug = [\"cup\"]\n", "ohwx man");
        assert_eq!(normalize("ohwx man, smiling", &rules), "ohwx man, smiling");
        assert_eq!(normalize("smiling, Ohwx Man, outdoors", &rules), "ohwx man, smiling, outdoors");
        assert_eq!(normalize("a photo of ohwx man smiling", &rules), "a photo of ohwx man smiling", "in a sentence");
        assert_eq!(normalize("a man, smiling", &rules), "ohwx man, a man, smiling", "the class word alone is not it");
        assert_eq!(normalize("ohwx, man with a cup", &rules), "ohwx man, ohwx, man with a mug");
        // An alias rule for one of its words leaves the trigger whole.
        let person =
            super::Rules::new(&Vocabulary::parse("[terms]\nperson = [\"man\"]\n").unwrap(), "ohwx man").unwrap();
        assert_eq!(normalize("ohwx man, a man in a park", &person), "ohwx man, a person in a park");
        let lower = Rules { case: CaseRule::Lower, trigger: "OHWX Man".into(), ..rules };
        assert_eq!(normalize("A TALL ohwx man, Outdoors", &lower), "a tall OHWX Man, outdoors");
        for caption in ["smiling, Ohwx Man", "ohwx man's hat, a cup", "a man"] {
            let once = normalize(caption, &lower);
            assert_eq!(normalize(&once, &lower), once, "{caption:?}");
        }
    }

    #[test]
    fn unchanged_captions_come_back_as_written_and_normalizing_twice_changes_nothing() {
        let rules = rules("[terms]\nmug = [\"cup\", \"coffee cup\"]\nsneaker = [\"sneakers\"]\n", "zeltmug");
        assert_eq!(normalize("zeltmug, a mug.\n", &rules), "zeltmug, a mug.\n");
        for caption in [
            "a coffee cup, cups, a Cup, zeltmug",
            "Sneakers and coffee cups,, sneaker , SNEAKERS",
            "a cup, a mug, a cup",
            "zeltmug",
        ] {
            let once = normalize(caption, &rules);
            assert_eq!(normalize(&once, &rules), once, "{caption:?}");
        }
        assert_eq!(normalize("a cup, a mug, a cup", &rules), "zeltmug, a mug");
    }
}
