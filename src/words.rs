//! Numbers in words the way the interface says them: "1 cell", "3 cells", "1 module has".

/// `count` and the noun, plural unless the count is one ("1 bucket", "2 buckets", "0 batches").
pub fn counted(count: usize, noun: &str) -> String {
    if count == 1 {
        return format!("1 {noun}");
    }
    let ending = if ["s", "x", "ch", "sh"].iter().any(|end| noun.ends_with(end)) { "es" } else { "s" };
    format!("{count} {noun}{ending}")
}

/// The verb that agrees with `count` things: `agreeing(1, "has", "have")` is "has".
pub fn agreeing(count: usize, one: &'static str, many: &'static str) -> &'static str {
    if count == 1 { one } else { many }
}

#[cfg(test)]
mod tests {
    use super::counted;

    #[test]
    fn one_is_singular_and_every_other_count_plural() {
        assert_eq!(counted(1, "caption"), "1 caption");
        assert_eq!(counted(0, "caption"), "0 captions");
        assert_eq!(counted(2, "batch"), "2 batches");
        assert_eq!(counted(12, "bucket"), "12 buckets");
    }
}
