//! The project's vocabulary (`vocabulary.toml`): canonical terms with their
//! aliases and spelling variants, banned terms, contradictory pairs, where
//! the trigger word goes and how captions are cased.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::text::plurals;
use crate::fsutil::atomic_write;

pub use crate::project::VOCABULARY_FILE as FILE;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerPosition {
    /// Moved to the front, or added there when missing.
    #[default]
    First,
    /// Left where it is; only its absence is reported.
    Anywhere,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseRule {
    /// Terms as written (a matched alias becomes the canonical term as written here).
    #[default]
    Keep,
    /// Whole captions lower-cased (the trigger word keeps its own spelling).
    Lower,
}

/// vocabulary.toml as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Vocabulary {
    pub trigger_position: TriggerPosition,
    pub case: CaseRule,
    /// Tags removed by normalization and reported by lint.
    pub banned: Vec<String>,
    /// Pairs of terms that cannot both describe one image.
    pub contradictions: Vec<[String; 2]>,
    /// Canonical term → aliases and spelling variants.
    pub terms: std::collections::BTreeMap<String, Vec<String>>,
}

/// What a phrase of an alias matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasTarget {
    pub canonical: String,
    /// Matched in a plural form: the canonical is written plural too.
    pub plural: bool,
}

/// The vocabulary ready for matching: alias phrases (lower-case words
/// joined by single spaces) → target.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    pub aliases: HashMap<String, AliasTarget>,
    /// The longest alias, in words.
    pub longest: usize,
    /// Banned phrases, as the aliases.
    pub banned: Vec<String>,
}

/// A vocabulary rule that cannot stand, with the key it is written under
/// (so the error can point at its line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for RuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl std::error::Error for RuleError {}

/// A vocabulary.toml that does not parse, or whose rules cannot stand, as
/// an error at its line and column.
fn located(file: &Path, text: &str, error: &anyhow::Error) -> crate::project::ConfigError {
    use crate::project::{ConfigError, locate};
    if let Some(error) = error.downcast_ref::<toml::de::Error>() {
        return ConfigError::from_toml(file, text, error);
    }
    let entries = locate::key_entries(text).unwrap_or_default();
    match error.downcast_ref::<RuleError>() {
        Some(rule) => ConfigError::at_key(file, text, &entries, &rule.key, rule.message.clone()),
        None => ConfigError { file: file.to_path_buf(), line: 1, column: 1, key: None, message: format!("{error:#}") },
    }
}

fn phrase(text: &str) -> Vec<String> {
    super::text::words(text).into_iter().map(|w| w.lower.into_owned()).collect()
}

impl Vocabulary {
    pub fn path(project: &Path) -> PathBuf {
        project.join(FILE)
    }

    /// Reads the project's vocabulary; none yet is an empty one.
    pub fn load(project: &Path) -> Result<Self> {
        let file = Self::path(project);
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
        };
        Self::parse(&text).map_err(|error| located(&file, &text, &error).into())
    }

    pub fn parse(text: &str) -> Result<Self> {
        let vocabulary: Self = toml::from_str(text)?;
        vocabulary.matcher()?;
        Ok(vocabulary)
    }

    /// The alias table, refusing rules that would make normalization
    /// undecided or not idempotent: an alias that is also a canonical term,
    /// or one alias claimed by two terms.
    pub fn matcher(&self) -> Result<Matcher, RuleError> {
        let refuse = |canonical: &str, message: String| Err(RuleError { key: format!("terms.{canonical}"), message });
        let mut matcher = Matcher::default();
        let canonicals: HashMap<String, &String> = self.terms.keys().map(|c| (phrase(c).join(" "), c)).collect();
        for (canonical, aliases) in &self.terms {
            for alias in aliases {
                let words = phrase(alias);
                if words.is_empty() {
                    return refuse(canonical, format!("the alias {alias:?} has no words"));
                }
                if let Some(other) = canonicals.get(&words.join(" ")) {
                    return refuse(
                        canonical,
                        format!("{alias:?} is also a canonical term ({other}); it cannot be both"),
                    );
                }
                let mut forms = vec![(words.join(" "), false)];
                let (head, last) = words.split_at(words.len() - 1);
                // A plural form that is itself a canonical term or an alias stays what it is.
                for plural in plurals(&last[0]) {
                    let form: String = head.iter().chain([&plural]).cloned().collect::<Vec<_>>().join(" ");
                    if !canonicals.contains_key(&form) {
                        forms.push((form, true));
                    }
                }
                for (form, plural) in forms {
                    match (matcher.aliases.get(&form), plural) {
                        (Some(existing), false) if !existing.plural && existing.canonical != *canonical => {
                            let both =
                                format!("{alias:?} is an alias of both {:?} and {canonical:?}", existing.canonical);
                            return refuse(canonical, both);
                        }
                        // A plural form never displaces what is there; an exact alias does.
                        (Some(_), true) => {}
                        _ => {
                            matcher.longest = matcher.longest.max(words.len());
                            matcher.aliases.insert(form, AliasTarget { canonical: canonical.clone(), plural });
                        }
                    }
                }
            }
        }
        // A canonical term that contains an alias would grow on every pass
        // ("coffee mug" = ["mug"] makes "coffee coffee mug").
        for canonical in self.terms.keys() {
            let words = phrase(canonical);
            for start in 0..words.len() {
                for end in start + 1..=words.len() {
                    if let Some(target) = matcher.aliases.get(&words[start..end].join(" ")) {
                        let alias = words[start..end].join(" ");
                        return refuse(canonical, format!("it contains the alias {alias:?} of {:?}", target.canonical));
                    }
                }
            }
        }
        matcher.banned = self.banned.iter().map(|b| phrase(b).join(" ")).filter(|p| !p.is_empty()).collect();
        Ok(matcher)
    }

    /// Adds `alias` to `canonical`'s aliases in the project's vocabulary.toml,
    /// editing only that entry so comments and layout stay as written.
    pub fn add_alias(project: &Path, canonical: &str, alias: &str) -> Result<Self> {
        let file = Self::path(project);
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let current = Self::parse(&text).with_context(|| format!("{}", file.display()))?;
        let mut aliases = current.terms.get(canonical).cloned().unwrap_or_default();
        if aliases.iter().any(|a| a.eq_ignore_ascii_case(alias)) {
            return Ok(current);
        }
        aliases.push(alias.to_string());
        let value = toml::Value::Array(aliases.into_iter().map(toml::Value::String).collect());
        let updated = crate::project::set_value(&text, Some("terms"), canonical, &value);
        let vocabulary = Self::parse(&updated).context("the new rule would make the vocabulary invalid")?;
        atomic_write(&file, updated.as_bytes()).with_context(|| format!("cannot write {}", file.display()))?;
        Ok(vocabulary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::VOCABULARY_TEMPLATE;

    #[test]
    fn aliases_match_with_their_plurals_and_conflicts_are_refused() {
        let vocabulary = Vocabulary::parse("[terms]\nsneaker = [\"trainer\", \"running shoe\"]\n").unwrap();
        let matcher = vocabulary.matcher().unwrap();
        let target = |p: &str| matcher.aliases.get(&phrase(p).join(" ")).cloned();
        assert_eq!(target("running shoes"), Some(AliasTarget { canonical: "sneaker".into(), plural: true }));
        assert_eq!(target("Trainer"), Some(AliasTarget { canonical: "sneaker".into(), plural: false }));
        assert_eq!(matcher.longest, 2);
        assert!(
            Vocabulary::parse("[terms]\nmug = [\"cup\"]\ncup = [\"beaker\"]\n").is_err(),
            "cup both alias and term"
        );
        assert!(Vocabulary::parse("[terms]\nmug = [\"cup\"]\nglass = [\"cup\"]\n").is_err(), "one alias, two terms");
        assert!(Vocabulary::parse("colour = 1").is_err(), "unknown keys are refused");
        assert!(Vocabulary::parse("[terms]\n\"coffee mug\" = [\"mug\"]\n").is_err(), "a term containing its alias");
    }

    #[test]
    fn the_template_is_the_default_vocabulary() {
        assert_eq!(Vocabulary::parse(VOCABULARY_TEMPLATE).unwrap(), Vocabulary::default());
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(Vocabulary::path(dir.path()), VOCABULARY_TEMPLATE).unwrap();
        let vocabulary = Vocabulary::add_alias(dir.path(), "mug", "cup").unwrap();
        assert_eq!(vocabulary.terms["mug"], ["cup"]);
        let text = std::fs::read_to_string(Vocabulary::path(dir.path())).unwrap();
        assert!(text.contains("[terms]\nmug = [\"cup\"]\n# mug = "), "under the header, comments kept: {text}");
    }

    #[test]
    fn adding_an_alias_keeps_the_file_as_written() {
        let dir = tempfile::tempdir().unwrap();
        Vocabulary::add_alias(dir.path(), "mug", "cup").unwrap();
        let text = std::fs::read_to_string(Vocabulary::path(dir.path())).unwrap();
        assert_eq!(text, "[terms]\nmug = [\"cup\"]\n");
        std::fs::write(Vocabulary::path(dir.path()), "# ours\n[terms]\n# mugs\nmug = [\"cup\"]\n").unwrap();
        Vocabulary::add_alias(dir.path(), "mug", "beaker").unwrap();
        let vocabulary = Vocabulary::add_alias(dir.path(), "running shoe", "trainer").unwrap();
        let text = std::fs::read_to_string(Vocabulary::path(dir.path())).unwrap();
        assert!(text.starts_with("# ours\n[terms]\n\"running shoe\" = [\"trainer\"]\n# mugs\n"), "{text}");
        assert_eq!(vocabulary.terms["mug"], ["cup", "beaker"]);
    }
}
