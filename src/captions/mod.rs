//! Captions: the sidecar text that says what each image shows.

/// Whether `caption` contains `trigger` as a whole word, ignoring case:
/// `zeltmug` matches "Zeltmug, a mug" but not "zeltmugs".
pub fn mentions_trigger(caption: &str, trigger: &str) -> bool {
    !trigger.is_empty()
        && caption
            .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'))
            .any(|word| word.eq_ignore_ascii_case(trigger))
}

#[cfg(test)]
mod tests {
    use super::mentions_trigger;

    #[test]
    fn trigger_must_be_a_whole_word() {
        assert!(mentions_trigger("Zeltmug, a mug", "zeltmug"));
        assert!(!mentions_trigger("zeltmugs on a table", "zeltmug"));
        assert!(!mentions_trigger("anything", ""));
    }
}
