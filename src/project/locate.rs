//! Maps between positions in a TOML text and dotted key paths, so that every
//! error about a project file can name the line and the key it is about.

use std::ops::Range;

use toml::de::{DeTable, DeValue};

/// One key of a TOML document with where its name and its value sit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEntry {
    /// Dotted path, with array items as `[i]`: `train.steps`, `samples[1].seed`.
    pub path: String,
    pub key_span: Range<usize>,
    pub value_span: Range<usize>,
}

/// Every key of `text`, parents before children, or `None` if the text is not valid TOML.
pub fn key_entries(text: &str) -> Option<Vec<KeyEntry>> {
    let root = DeTable::parse(text).ok()?;
    let mut entries = Vec::new();
    collect_table(root.get_ref(), "", &mut entries);
    Some(entries)
}

fn collect_table(table: &DeTable<'_>, prefix: &str, out: &mut Vec<KeyEntry>) {
    for (key, value) in table.iter() {
        let path = if prefix.is_empty() { key.get_ref().to_string() } else { format!("{prefix}.{}", key.get_ref()) };
        out.push(KeyEntry { path: path.clone(), key_span: key.span(), value_span: value.span() });
        collect_value(value.get_ref(), &path, out);
    }
}

fn collect_value(value: &DeValue<'_>, path: &str, out: &mut Vec<KeyEntry>) {
    match value {
        DeValue::Table(table) => collect_table(table, path, out),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let item_path = format!("{path}[{i}]");
                if let DeValue::Table(table) = item.get_ref() {
                    // Array-of-tables items carry no key of their own: their span stands in for it.
                    out.push(KeyEntry { path: item_path.clone(), key_span: item.span(), value_span: item.span() });
                    collect_table(table, &item_path, out);
                }
            }
        }
        _ => {}
    }
}

/// The innermost key whose name or value covers `span`.
pub fn key_at(entries: &[KeyEntry], span: &Range<usize>) -> Option<String> {
    let covers = |r: &Range<usize>| r.start <= span.start && span.end <= r.end.max(r.start + 1);
    entries
        .iter()
        .filter(|e| covers(&e.key_span) || covers(&e.value_span))
        .max_by_key(|e| e.path.len())
        .map(|e| e.path.clone())
}

/// Where the key at `path` is written: its name's span for a plain key, the
/// item's span for an array-of-tables item; the nearest written parent when
/// the key itself is absent (it took its default).
pub fn span_of(entries: &[KeyEntry], path: &str) -> Option<Range<usize>> {
    let mut wanted = path;
    loop {
        if let Some(entry) = entries.iter().find(|e| e.path == wanted) {
            return Some(entry.key_span.clone());
        }
        let cut = wanted.rfind(['.', '['])?;
        wanted = &wanted[..cut];
    }
}

/// 1-based line and column of a byte offset.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str =
        "name = \"x\"\n\n[train]\nsteps = 10\n\n[[samples]]\nprompt = \"a\"\n\n[[samples]]\nprompt = \"b\"\nseed = 3\n";

    #[test]
    fn finds_nested_and_array_keys() {
        let entries = key_entries(TEXT).unwrap();
        let paths: Vec<_> = entries.iter().map(|e| e.path.as_str()).collect();
        assert!(paths.contains(&"train.steps"));
        assert!(paths.contains(&"samples[1].seed"));
        let span = span_of(&entries, "samples[1].seed").unwrap();
        assert_eq!(line_column(TEXT, span.start), (11, 1));
        assert_eq!(key_at(&entries, &span).as_deref(), Some("samples[1].seed"));
    }

    #[test]
    fn absent_key_falls_back_to_its_parent() {
        let entries = key_entries(TEXT).unwrap();
        let span = span_of(&entries, "train.batch_size").unwrap();
        assert_eq!(line_column(TEXT, span.start).0, 3);
        assert_eq!(span_of(&entries, "lora.rank"), None);
    }

    #[test]
    fn line_and_column_count_characters() {
        assert_eq!(line_column("ab\ncé=1", 7), (2, 4));
        assert_eq!(line_column("", 5), (1, 1));
    }
}
