//! The CLIP byte-level BPE tokenizer that every Stable Diffusion text encoder
//! uses, read from `vocab.json` + `merges.txt` or from a `tokenizer.json`.
//! Easel ships the standard CLIP files (assets/clip/) for models that carry
//! no tokenizer, such as single-file checkpoints and the built-in model.
//!
//! Matches Hugging Face's CLIPTokenizer: NFC, whitespace runs collapsed,
//! lower case, CLIP's split pattern, bytes mapped to printable characters,
//! `</w>` marking the end of each word, merges applied by rank.

use std::collections::HashMap;
use std::path::Path;

use regex::Regex;
use unicode_normalization::UnicodeNormalization;

/// Every prompt is padded or cut to this many tokens, start and end included.
pub const CONTEXT_LENGTH: usize = 77;
pub const START_OF_TEXT: &str = "<|startoftext|>";
pub const END_OF_TEXT: &str = "<|endoftext|>";

pub const SHIPPED_VOCAB: &str = include_str!("../../assets/clip/vocab.json");
pub const SHIPPED_MERGES: &str = include_str!("../../assets/clip/merges.txt");

/// What fills the prompt after the end token: SD1's tokenizer repeats the end
/// token, SD2's and SDXL's second tokenizer use `!` (id 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    EndOfText,
    Exclamation,
}

#[derive(Debug)]
pub struct ClipTokenizer {
    vocab: HashMap<String, u32>,
    /// Merge rank of each adjacent pair: lower merges first.
    ranks: HashMap<(String, String), usize>,
    byte_chars: [char; 256],
    pattern: Regex,
    start: u32,
    end: u32,
    pad: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

impl ClipTokenizer {
    /// The CLIP tokenizer shipped with Easel.
    pub fn shipped(padding: Padding) -> Self {
        Self::from_parts(SHIPPED_VOCAB, SHIPPED_MERGES, padding, "assets/clip")
            .expect("the shipped CLIP tokenizer is valid (checked by tests)")
    }

    /// Reads a diffusers `tokenizer/` folder: `vocab.json` + `merges.txt`
    /// when present, else `tokenizer.json`.
    pub fn from_folder(folder: &Path, padding: Padding) -> Result<Self, TokenizerError> {
        let read = |name: &str| {
            let path = folder.join(name);
            std::fs::read_to_string(&path)
                .map_err(|source| TokenizerError::Read { path: path.display().to_string(), source })
        };
        let (vocab_path, merges_path) = (folder.join("vocab.json"), folder.join("merges.txt"));
        if vocab_path.is_file() && merges_path.is_file() {
            return Self::from_parts(
                &read("vocab.json")?,
                &read("merges.txt")?,
                padding,
                &folder.display().to_string(),
            );
        }
        let path = folder.join("tokenizer.json");
        Self::from_tokenizer_json(&read("tokenizer.json")?, padding, &path.display().to_string())
    }

    /// Parses `vocab.json` (token → id) and `merges.txt` (one "a b" pair per line).
    pub fn from_parts(vocab: &str, merges: &str, padding: Padding, origin: &str) -> Result<Self, TokenizerError> {
        let invalid = |message: String| TokenizerError::Invalid { path: origin.to_string(), message };
        let vocab: HashMap<String, u32> =
            serde_json::from_str(vocab).map_err(|e| invalid(format!("vocab.json is not a token → id map: {e}")))?;
        let mut pairs = Vec::new();
        for (number, line) in merges.lines().enumerate() {
            if line.starts_with("#version") || line.trim().is_empty() {
                continue;
            }
            let (a, b) = line
                .split_once(' ')
                .ok_or_else(|| invalid(format!("merges.txt line {}: expected two symbols", number + 1)))?;
            pairs.push((a.to_string(), b.to_string()));
        }
        Self::build(vocab, pairs, padding, origin)
    }

    /// Parses a Hugging Face `tokenizer.json` holding a BPE model.
    pub fn from_tokenizer_json(text: &str, padding: Padding, origin: &str) -> Result<Self, TokenizerError> {
        #[derive(serde::Deserialize)]
        struct File {
            model: Model,
        }
        #[derive(serde::Deserialize)]
        struct Model {
            vocab: HashMap<String, u32>,
            merges: Vec<Merge>,
        }
        /// Newer files store merges as pairs, older ones as "a b" strings.
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Merge {
            Pair(String, String),
            Joined(String),
        }
        let invalid = |message: String| TokenizerError::Invalid { path: origin.to_string(), message };
        let file: File = serde_json::from_str(text).map_err(|e| invalid(format!("not a BPE tokenizer.json: {e}")))?;
        let pairs = file
            .model
            .merges
            .into_iter()
            .map(|merge| match merge {
                Merge::Pair(a, b) => Ok((a, b)),
                Merge::Joined(joined) => joined
                    .split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| invalid(format!("merge `{joined}` is not two symbols"))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::build(file.model.vocab, pairs, padding, origin)
    }

    fn build(
        vocab: HashMap<String, u32>,
        pairs: Vec<(String, String)>,
        padding: Padding,
        origin: &str,
    ) -> Result<Self, TokenizerError> {
        let id = |token: &str| {
            vocab.get(token).copied().ok_or_else(|| TokenizerError::Invalid {
                path: origin.to_string(),
                message: format!("the vocabulary has no `{token}`"),
            })
        };
        let (start, end) = (id(START_OF_TEXT)?, id(END_OF_TEXT)?);
        let pad = match padding {
            Padding::EndOfText => end,
            Padding::Exclamation => id("!")?,
        };
        let ranks = pairs.into_iter().enumerate().map(|(rank, pair)| (pair, rank)).collect();
        let pattern =
            Regex::new(r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+")
                .expect("static pattern");
        Ok(Self { vocab, ranks, byte_chars: byte_to_char(), pattern, start, end, pad })
    }

    /// Token ids of `text` without start, end or padding.
    pub fn encode_words(&self, text: &str) -> Vec<u32> {
        let normalized: String = text.nfc().collect();
        let normalized = normalized.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
        let mut ids = Vec::new();
        for piece in self.pattern.find_iter(&normalized) {
            let piece = piece.as_str();
            if piece == START_OF_TEXT || piece == END_OF_TEXT {
                ids.push(self.vocab[piece]);
                continue;
            }
            let mapped: String = piece.bytes().map(|b| self.byte_chars[usize::from(b)]).collect();
            for symbol in self.bpe(&mapped) {
                // Every symbol that merges produce is in the vocabulary; the
                // end token stands in for anything a foreign vocabulary lacks.
                ids.push(self.vocab.get(&symbol).copied().unwrap_or(self.end));
            }
        }
        ids
    }

    /// The 77 ids the text encoder takes: start, the words (cut if too many), end, padding.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::with_capacity(CONTEXT_LENGTH);
        ids.push(self.start);
        ids.extend(self.encode_words(text).into_iter().take(CONTEXT_LENGTH - 2));
        ids.push(self.end);
        ids.resize(CONTEXT_LENGTH, self.pad);
        ids
    }

    /// How many tokens the words of `text` take (the window holds 75).
    pub fn count(&self, text: &str) -> usize {
        self.encode_words(text).len()
    }

    /// `count`, remembering each word's token count in `cache`: linting a
    /// dataset sees the same words over and over.
    pub fn count_cached(&self, text: &str, cache: &mut std::collections::HashMap<String, usize>) -> usize {
        // ASCII text is NFC already; whitespace runs do not change the pieces found.
        let normalized =
            if text.is_ascii() { text.to_ascii_lowercase() } else { text.nfc().collect::<String>().to_lowercase() };
        let mut count = 0;
        for piece in self.pattern.find_iter(&normalized) {
            let piece = piece.as_str();
            count += match cache.get(piece) {
                Some(&n) => n,
                None => {
                    let n = self.encode_words(piece).len();
                    cache.insert(piece.to_string(), n);
                    n
                }
            };
        }
        count
    }

    /// Byte-pair merges of one word, whose last symbol carries `</w>`.
    fn bpe(&self, word: &str) -> Vec<String> {
        let mut symbols: Vec<String> = word.chars().map(String::from).collect();
        if let Some(last) = symbols.last_mut() {
            last.push_str("</w>");
        }
        loop {
            let best = symbols
                .windows(2)
                .enumerate()
                .filter_map(|(i, pair)| self.ranks.get(&(pair[0].clone(), pair[1].clone())).map(|rank| (*rank, i)))
                .min();
            let Some((_, i)) = best else { break };
            let (a, b) = (symbols[i].clone(), symbols[i + 1].clone());
            // Merge every occurrence of the best pair, left to right.
            let mut merged = Vec::with_capacity(symbols.len());
            let mut i = 0;
            while i < symbols.len() {
                if i + 1 < symbols.len() && symbols[i] == a && symbols[i + 1] == b {
                    merged.push(format!("{a}{b}"));
                    i += 2;
                } else {
                    merged.push(symbols[i].clone());
                    i += 1;
                }
            }
            symbols = merged;
            if symbols.len() == 1 {
                break;
            }
        }
        symbols
    }
}

/// GPT-2's reversible map from bytes to printable characters: printable
/// Latin-1 bytes stand for themselves, the rest are shifted past U+0100.
fn byte_to_char() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for byte in 0..=255u8 {
        let printable = matches!(byte, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        table[usize::from(byte)] = if printable {
            char::from(byte)
        } else {
            let c = char::from_u32(next).expect("below the surrogate range");
            next += 1;
            c
        };
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_counts_equal_plain_counts() {
        let tokenizer = ClipTokenizer::shipped(Padding::EndOfText);
        let mut cache = std::collections::HashMap::new();
        for text in
            ["a  Teal\tmug,  soft light", "Hello World!! it's 2024 :) naïve café", "ｆｕｌｌ width", "a teal mug"]
        {
            assert_eq!(tokenizer.count_cached(text, &mut cache), tokenizer.count(text), "{text:?}");
        }
    }

    /// Ids checked against OpenAI's own tokenizer (see the fixtures README).
    const CASES: &[(&str, &[u32])] = &[
        ("a photo of a cat, wearing a red hat", &[49406, 320, 1125, 539, 320, 2368, 267, 3309, 320, 736, 3801, 49407]),
        ("blurry, low quality", &[49406, 21977, 267, 1042, 3027, 49407]),
        (
            "Hello World!! it's 2024 :) naïve café",
            &[49406, 3306, 1002, 748, 585, 568, 273, 271, 273, 275, 1408, 1097, 35689, 563, 15304, 49407],
        ),
    ];

    #[test]
    fn matches_reference_ids_and_pads_to_77() {
        let tokenizer = ClipTokenizer::shipped(Padding::EndOfText);
        for (text, expected) in CASES {
            let ids = tokenizer.encode(text);
            assert_eq!(ids.len(), CONTEXT_LENGTH);
            assert_eq!(&ids[..expected.len()], *expected, "{text}");
            assert!(ids[expected.len()..].iter().all(|&id| id == 49407));
        }
    }

    #[test]
    fn decomposed_accents_and_odd_spacing_normalize() {
        let tokenizer = ClipTokenizer::shipped(Padding::EndOfText);
        assert_eq!(
            tokenizer.encode("Hello   World!! it's 2024 :) nai\u{308}ve cafe\u{301}\n"),
            tokenizer.encode(CASES[2].0)
        );
    }

    #[test]
    fn sd2_style_padding_uses_the_exclamation_mark() {
        let ids = ClipTokenizer::shipped(Padding::Exclamation).encode("blurry, low quality");
        assert_eq!(&ids[..6], &[49406, 21977, 267, 1042, 3027, 49407]);
        assert!(ids[6..].iter().all(|&id| id == 0));
    }

    #[test]
    fn long_prompts_keep_the_end_token() {
        let tokenizer = ClipTokenizer::shipped(Padding::EndOfText);
        let long = "red ".repeat(100);
        assert_eq!(tokenizer.count(&long), 100);
        let ids = tokenizer.encode(&long);
        assert_eq!((ids.len(), ids[0], ids[76]), (77, 49406, 49407));
        assert!(ids[1..76].iter().all(|&id| id == ids[1]));
    }

    #[test]
    fn tokenizer_json_gives_the_same_ids() {
        let vocab: HashMap<String, u32> = serde_json::from_str(SHIPPED_VOCAB).unwrap();
        let merges: Vec<[&str; 2]> =
            SHIPPED_MERGES.lines().skip(1).filter_map(|line| line.split_once(' ').map(|(a, b)| [a, b])).collect();
        let json = serde_json::json!({ "model": { "type": "BPE", "vocab": vocab, "merges": merges } }).to_string();
        let from_json = ClipTokenizer::from_tokenizer_json(&json, Padding::EndOfText, "test").unwrap();
        let shipped = ClipTokenizer::shipped(Padding::EndOfText);
        for (text, _) in CASES {
            assert_eq!(from_json.encode(text), shipped.encode(text));
        }
    }

    #[test]
    fn broken_files_are_named() {
        let error = ClipTokenizer::from_parts("{}", "", Padding::EndOfText, "x/tokenizer").unwrap_err().to_string();
        assert!(error.contains("x/tokenizer") && error.contains("<|startoftext|>"), "{error}");
        let error = ClipTokenizer::from_parts("[1]", "", Padding::EndOfText, "y").unwrap_err().to_string();
        assert!(error.starts_with("y: vocab.json"), "{error}");
    }
}
