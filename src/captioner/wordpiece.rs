//! BERT's tokenizer, as BLIP's processor uses it: the basic tokenizer (clean
//! up, lower-case, strip accents, split off punctuation and CJK characters),
//! then greedy longest-match WordPiece. Decoding joins `##` pieces and drops
//! the space before punctuation and contractions as the `tokenizers` WordPiece
//! decoder transformers 5 uses does (checked by tests/caption_blip.rs).
//!
//! Written here rather than pulling in the `tokenizers` crate: this is all
//! BLIP needs, and that crate's build time would dominate our CI.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::{Context, bail};
use serde::Deserialize;
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// BERT marks word continuations with this prefix.
const CONTINUATION: &str = "##";
/// Longer words become `[UNK]` whole (BERT's `max_input_chars_per_word`).
const MAX_WORD_CHARS: usize = 100;
/// The special tokens BERT vocabularies name; decoding skips them.
const SPECIAL_TOKENS: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

pub struct WordPiece {
    ids: HashMap<String, u32>,
    /// Token text by id; ids past the end (tokens added beyond the vocabulary,
    /// such as BLIP's `[DEC]`) decode to nothing.
    tokens: Vec<String>,
    special: HashSet<u32>,
    unknown: u32,
    lowercase: bool,
    /// transformers' `clean_up_tokenization_spaces` over the decoded text
    /// (off unless tokenizer_config.json turns it on).
    clean_up_spaces: bool,
}

/// The parts of `tokenizer.json` a WordPiece vocabulary lives in.
#[derive(Deserialize)]
struct TokenizerFile {
    model: TokenizerModel,
    #[serde(default)]
    added_tokens: Vec<AddedToken>,
}

#[derive(Deserialize)]
struct TokenizerModel {
    #[serde(rename = "type")]
    kind: Option<String>,
    vocab: HashMap<String, u32>,
}

#[derive(Deserialize)]
struct AddedToken {
    id: u32,
    content: String,
    #[serde(default)]
    special: bool,
}

#[derive(Deserialize)]
struct TokenizerConfig {
    do_lower_case: Option<bool>,
    clean_up_tokenization_spaces: Option<bool>,
}

impl WordPiece {
    /// The vocabulary in `folder`: `vocab.txt` (one token a line, the line
    /// number its id), else `tokenizer.json`'s WordPiece vocabulary and added
    /// tokens. `tokenizer_config.json`'s `do_lower_case` when present (BLIP's
    /// models are uncased).
    pub fn read(folder: &Path) -> anyhow::Result<Self> {
        let (vocab, json) = (folder.join("vocab.txt"), folder.join("tokenizer.json"));
        let (mut ids, mut special) = (HashMap::new(), HashSet::new());
        if vocab.is_file() {
            let text = std::fs::read_to_string(&vocab).with_context(|| format!("cannot read {}", vocab.display()))?;
            for (id, token) in text.lines().enumerate() {
                ids.insert(token.to_string(), id as u32);
            }
        } else if json.is_file() {
            let file: TokenizerFile = crate::model::read_json_config(&json)?;
            if file.model.kind.as_deref().is_some_and(|kind| kind != "WordPiece") {
                bail!("{}: a {} tokenizer, not BERT's WordPiece", json.display(), file.model.kind.unwrap_or_default());
            }
            ids = file.model.vocab;
            for added in file.added_tokens {
                if added.special {
                    special.insert(added.id);
                }
                ids.insert(added.content, added.id);
            }
        } else {
            bail!("{}: no vocab.txt or tokenizer.json (BERT's WordPiece vocabulary)", folder.display());
        }
        let config = folder.join("tokenizer_config.json");
        let config = if config.is_file() {
            crate::model::read_json_config::<TokenizerConfig>(&config)?
        } else {
            TokenizerConfig { do_lower_case: None, clean_up_tokenization_spaces: None }
        };
        let mut tokenizer = Self::new(ids, special, config.do_lower_case.unwrap_or(true))
            .with_context(|| folder.display().to_string())?;
        tokenizer.clean_up_spaces = config.clean_up_tokenization_spaces.unwrap_or(false);
        Ok(tokenizer)
    }

    fn new(ids: HashMap<String, u32>, mut special: HashSet<u32>, lowercase: bool) -> anyhow::Result<Self> {
        let Some(&unknown) = ids.get("[UNK]") else { bail!("the vocabulary has no [UNK] token") };
        special.extend(SPECIAL_TOKENS.iter().filter_map(|token| ids.get(*token).copied()));
        let mut tokens = vec![String::new(); ids.values().map(|&id| id as usize + 1).max().unwrap_or(0)];
        for (token, &id) in &ids {
            tokens[id as usize] = token.clone();
        }
        Ok(Self { ids, tokens, special, unknown, lowercase, clean_up_spaces: false })
    }

    /// The text's WordPiece ids, without `[CLS]`/`[SEP]` around them.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        for word in self.basic_tokens(text) {
            self.word_pieces(&word, &mut out);
        }
        out
    }

    /// The ids back to text as transformers' `decode(skip_special_tokens=True)`
    /// does for BERT: special tokens dropped first; then each token after the
    /// first joins with a space, except `##` pieces (prefix dropped) and
    /// tokens starting with punctuation or a contraction (the decoder's
    /// clean-up, applied token by token, so ` ' ` keeps its spaces).
    pub fn decode(&self, ids: &[u32]) -> String {
        let tokens = ids
            .iter()
            .filter(|id| !self.special.contains(id))
            .filter_map(|&id| self.tokens.get(id as usize).filter(|t| !t.is_empty()));
        let mut text = String::new();
        for (index, token) in tokens.enumerate() {
            match token.strip_prefix(CONTINUATION) {
                Some(rest) if index > 0 => text.push_str(rest),
                _ => {
                    if index > 0 && !NO_SPACE_BEFORE.iter().any(|start| token.starts_with(start)) {
                        text.push(' ');
                    }
                    text.push_str(token);
                }
            }
        }
        if self.clean_up_spaces { clean_up_tokenization(&text) } else { text }
    }

    /// BERT's basic tokenizer: control characters dropped, whitespace
    /// split, lower-cased and accents stripped (uncased models), punctuation
    /// and CJK characters each their own word.
    fn basic_tokens(&self, text: &str) -> Vec<String> {
        let mut words = Vec::new();
        let mut current = String::new();
        let flush = |current: &mut String, words: &mut Vec<String>| {
            if !current.is_empty() {
                words.push(std::mem::take(current));
            }
        };
        let normalized: String = if self.lowercase {
            text.to_lowercase().nfd().filter(|&c| !is_combining_mark(c)).collect()
        } else {
            text.to_string()
        };
        for c in normalized.chars() {
            if c == '\0' || c == '\u{fffd}' || (c.is_control() && !c.is_whitespace()) {
                continue;
            }
            if c.is_whitespace() {
                flush(&mut current, &mut words);
            } else if is_punctuation(c) || is_cjk(c) {
                flush(&mut current, &mut words);
                words.push(c.to_string());
            } else {
                current.push(c);
            }
        }
        flush(&mut current, &mut words);
        words
    }

    /// Greedy longest-match-first pieces of one word; a word with a part no
    /// piece covers is `[UNK]` whole, as BERT does.
    fn word_pieces(&self, word: &str, out: &mut Vec<u32>) {
        let chars: Vec<char> = word.chars().collect();
        if chars.len() > MAX_WORD_CHARS {
            out.push(self.unknown);
            return;
        }
        let mut pieces = Vec::new();
        let mut start = 0;
        while start < chars.len() {
            let found = (start + 1..=chars.len()).rev().find_map(|end| {
                let piece: String = chars[start..end].iter().collect();
                let piece = if start > 0 { format!("{CONTINUATION}{piece}") } else { piece };
                self.ids.get(&piece).map(|&id| (id, end))
            });
            let Some((id, end)) = found else {
                out.push(self.unknown);
                return;
            };
            pieces.push(id);
            start = end;
        }
        out.extend(pieces);
    }
}

/// BERT's punctuation: every non-alphanumeric ASCII symbol, and Unicode's
/// common punctuation blocks (general punctuation, CJK punctuation, Latin-1's
/// quotes and marks) standing in for the `P*` categories, which std lacks.
fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation()
        || matches!(c, '\u{a1}' | '\u{a7}' | '\u{ab}' | '\u{b6}' | '\u{b7}' | '\u{bb}' | '\u{bf}')
        || ('\u{2010}'..='\u{2027}').contains(&c)
        || ('\u{2030}'..='\u{205e}').contains(&c)
        || ('\u{3001}'..='\u{3003}').contains(&c)
        || ('\u{3008}'..='\u{3011}').contains(&c)
}

/// The CJK ideograph blocks BERT splits into single characters.
fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0x20000..=0x2A6DF | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F | 0x2B820..=0x2CEAF | 0xF900..=0xFAFF | 0x2F800..=0x2FA1F)
}

/// Token starts the WordPiece decoder's clean-up joins to the word before.
const NO_SPACE_BEFORE: [&str; 9] = [".", "?", "!", ",", "n't", "'m", "'s", "'ve", "'re"];

/// transformers' `clean_up_tokenization` over the whole text.
fn clean_up_tokenization(text: &str) -> String {
    const RULES: [(&str, &str); 10] = [
        (" .", "."),
        (" ?", "?"),
        (" !", "!"),
        (" ,", ","),
        (" ' ", "'"),
        (" n't", "n't"),
        (" 'm", "'m"),
        (" 's", "'s"),
        (" 've", "'ve"),
        (" 're", "'re"),
    ];
    RULES.iter().fold(text.to_string(), |text, (from, to)| text.replace(from, to))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocabulary(tokens: &[&str]) -> WordPiece {
        let ids = tokens.iter().enumerate().map(|(id, t)| (t.to_string(), id as u32)).collect();
        WordPiece::new(ids, HashSet::new(), true).unwrap()
    }

    #[test]
    fn words_split_into_the_longest_pieces() {
        let vocab = vocabulary(&["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "photo", "of", "dog", "##s", ",", "cafe"]);
        assert_eq!(vocab.encode("A Photo of DOGS, Café"), vec![4, 5, 6, 7, 8, 9, 10]);
        // "cats" has no piece for its start: the whole word is unknown.
        assert_eq!(vocab.encode("cats"), vec![1]);
        assert_eq!(vocab.decode(&[2, 4, 5, 6, 7, 8, 9, 10, 3, 0]), "a photo of dogs, cafe");
    }
}
