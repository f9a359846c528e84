//! Fitting text into a terminal's columns: cut with an ellipsis at the end
//! or in the middle (both ends kept: what happened, and the file it
//! happened to), or word-wrapped, measured in display columns.

use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

/// `text` in at most `width` columns: cut at the end, an ellipsis where it was.
pub fn ellipsized(text: &str, width: usize) -> String {
    if text.width() <= width {
        return text.to_string();
    }
    let mut kept = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = c.width().unwrap_or(0);
        if used + w + 1 > width {
            break;
        }
        used += w;
        kept.push(c);
    }
    if width > 0 { kept + "…" } else { kept }
}

/// `text` in at most `width` columns: cut in the middle, so that its start
/// and its end (a file name, the keys that answer) both stay.
pub fn ellipsized_middle(text: &str, width: usize) -> String {
    if text.width() <= width {
        return text.to_string();
    }
    if width < 3 {
        return ellipsized(text, width);
    }
    let (head_width, tail_width) = ((width - 1) / 2, width - 1 - (width - 1) / 2);
    let head = ellipsized(text, head_width + 1);
    let head = head.trim_end_matches('…');
    let mut tail: Vec<char> = Vec::new();
    let mut used = 0;
    for c in text.chars().rev() {
        let w = c.width().unwrap_or(0);
        if used + w > tail_width {
            break;
        }
        used += w;
        tail.push(c);
    }
    format!("{head}…{}", tail.into_iter().rev().collect::<String>())
}

/// `text` word-wrapped into lines of at most `width` columns (a word longer
/// than a line is split); an empty text is one empty line.
pub fn wrapped(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let mut word = word.to_string();
        loop {
            let gap = usize::from(!line.is_empty());
            if line.width() + gap + word.width() <= width {
                if gap == 1 {
                    line.push(' ');
                }
                line.push_str(&word);
                break;
            }
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
                continue;
            }
            // A word wider than a whole line: as much as fits, the rest on the next.
            let part = ellipsized(&word, width + 1);
            let part = part.trim_end_matches('…').to_string();
            word = word[part.len()..].to_string();
            lines.push(part);
            if word.is_empty() {
                break;
            }
        }
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// `text` wrapped as by `wrapped`, a key's line continuing under its
/// description: what follows its leading keys and the two spaces after them
/// ("  s y  save, then quit …" goes on under "save").
pub fn wrapped_under_description(text: &str, width: usize) -> Vec<String> {
    let lead = text.len() - text.trim_start().len();
    let start = text[lead..].find("  ").map(|gap| {
        let after = &text[lead + gap..];
        lead + gap + (after.len() - after.trim_start().len())
    });
    let Some(start) = start.filter(|&start| text[..start].width() <= width / 2) else {
        return wrapped(text, width);
    };
    let (keys, description) = text.split_at(start);
    let indent = keys.width();
    let mut lines = wrapped(description, width - indent).into_iter();
    let first = format!("{keys}{}", lines.next().unwrap_or_default());
    std::iter::once(first).chain(lines.map(|line| format!("{}{line}", " ".repeat(indent)))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_text_fits_its_width_and_says_where_it_was_cut() {
        assert_eq!(ellipsized("short", 10), "short");
        assert_eq!(ellipsized("a zeltmug on a table", 10), "a zeltmug…");
        let path = "y replaces it, n keeps it: /home/me/projects/demo/exports/demo-step-100.safetensors exists";
        let cut = ellipsized_middle(path, 40);
        assert_eq!(cut.width(), 40);
        assert!(cut.starts_with("y replaces it, n ke"), "{cut}");
        assert!(cut.ends_with("safetensors exists"), "{cut}");
    }

    #[test]
    fn wrapping_keeps_words_whole_and_splits_only_what_cannot_fit() {
        assert_eq!(wrapped("one two three four", 9), ["one two", "three", "four"]);
        assert_eq!(wrapped("", 5), [""]);
        assert_eq!(wrapped("abcdefghij", 4), ["abcd", "efgh", "ij"]);
        for line in wrapped("s starts a run with project.toml's settings and more words to wrap", 20) {
            assert!(line.width() <= 20, "{line}");
        }
        let key = wrapped_under_description("     s y  save, then quit once the run has stopped", 30);
        assert_eq!(key, ["     s y  save, then quit once", "          the run has stopped"]);
        assert_eq!(wrapped_under_description("no keys here at all", 10), ["no keys", "here at", "all"]);
    }
}
