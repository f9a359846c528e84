//! Colour themes, read from TOML: the built-in ones from `themes/` (embedded
//! at build time) or any theme file the user points at.

use std::path::Path;
use std::str::FromStr;

use ratatui::style::{Color, Modifier, Style};
use serde::Deserialize;

include!(concat!(env!("OUT_DIR"), "/themes.rs"));

/// The theme used when neither the command line nor project.toml names one.
pub const DEFAULT_THEME: &str = "dark";

#[derive(Debug, Clone, PartialEq)]
pub struct Theme {
    /// The built-in name or the file path it was loaded from.
    pub name: String,
    pub background: Color,
    pub foreground: Color,
    pub muted: Color,
    pub accent: Color,
    pub border: Color,
    pub border_focused: Color,
    pub selection_bg: Color,
    pub selection_fg: Color,
    pub status_bg: Color,
    pub status_fg: Color,
    pub ok: Color,
    pub warning: Color,
    pub error: Color,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ThemeFile {
    /// Read so that the key is allowed; it documents the file for people.
    #[serde(rename = "description")]
    _description: Option<String>,
    colors: ColorTable,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ColorTable {
    background: String,
    foreground: String,
    muted: String,
    accent: String,
    border: String,
    border_focused: String,
    selection_bg: String,
    selection_fg: String,
    status_bg: String,
    status_fg: String,
    ok: String,
    warning: String,
    error: String,
}

impl Theme {
    /// Names of the built-in themes, sorted.
    pub fn builtin_names() -> impl Iterator<Item = &'static str> {
        BUILTIN_THEMES.iter().map(|(name, _)| *name)
    }

    /// A built-in theme by name or, for a spec ending in `.toml`, a theme
    /// file (relative paths are taken from `base`).
    pub fn resolve(spec: &str, base: &Path) -> Result<Self, String> {
        if spec.ends_with(".toml") {
            let path = base.join(spec);
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("cannot read theme {}: {e}", path.display()))?;
            return Self::parse(spec, &text).map_err(|e| format!("{}: {e}", path.display()));
        }
        let (_, text) = BUILTIN_THEMES.iter().find(|(name, _)| *name == spec).ok_or_else(|| {
            let names: Vec<_> = Self::builtin_names().collect();
            format!("unknown theme `{spec}` (built-in: {}; or give a path to a .toml theme file)", names.join(", "))
        })?;
        Self::parse(spec, text)
    }

    pub fn parse(name: &str, text: &str) -> Result<Self, String> {
        let file: ThemeFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let c = file.colors;
        let color = |key: &str, value: &str| {
            Color::from_str(value)
                .map_err(|_| format!("colors.{key}: `{value}` is not a colour (use a name or #rrggbb)"))
        };
        Ok(Self {
            name: name.to_string(),
            background: color("background", &c.background)?,
            foreground: color("foreground", &c.foreground)?,
            muted: color("muted", &c.muted)?,
            accent: color("accent", &c.accent)?,
            border: color("border", &c.border)?,
            border_focused: color("border_focused", &c.border_focused)?,
            selection_bg: color("selection_bg", &c.selection_bg)?,
            selection_fg: color("selection_fg", &c.selection_fg)?,
            status_bg: color("status_bg", &c.status_bg)?,
            status_fg: color("status_fg", &c.status_fg)?,
            ok: color("ok", &c.ok)?,
            warning: color("warning", &c.warning)?,
            error: color("error", &c.error)?,
        })
    }

    /// The built-in theme after this one, wrapping around (a theme loaded
    /// from a file is followed by the first built-in).
    pub fn next_builtin(&self) -> Self {
        let names: Vec<_> = Self::builtin_names().collect();
        let next = match names.iter().position(|n| *n == self.name) {
            Some(i) => names[(i + 1) % names.len()],
            None => names[0],
        };
        Self::resolve(next, Path::new(".")).expect("built-in themes parse (checked by tests)")
    }

    pub fn base(&self) -> Style {
        Style::new().fg(self.foreground).bg(self.background)
    }

    pub fn muted(&self) -> Style {
        Style::new().fg(self.muted)
    }

    pub fn accent(&self) -> Style {
        Style::new().fg(self.accent).add_modifier(Modifier::BOLD)
    }

    pub fn border(&self, focused: bool) -> Style {
        Style::new().fg(if focused { self.border_focused } else { self.border })
    }

    pub fn selection(&self) -> Style {
        Style::new().fg(self.selection_fg).bg(self.selection_bg).add_modifier(Modifier::BOLD)
    }

    pub fn status(&self) -> Style {
        Style::new().fg(self.status_fg).bg(self.status_bg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_theme_parses() {
        let names: Vec<_> = Theme::builtin_names().collect();
        assert!(names.contains(&"dark") && names.contains(&"light") && names.contains(&"ansi16"));
        for name in names {
            Theme::resolve(name, Path::new(".")).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn ansi16_uses_only_the_sixteen_named_colours() {
        let t = Theme::resolve("ansi16", Path::new(".")).unwrap();
        for color in [
            t.background,
            t.foreground,
            t.muted,
            t.accent,
            t.border,
            t.border_focused,
            t.selection_bg,
            t.selection_fg,
            t.status_bg,
            t.status_fg,
            t.ok,
            t.warning,
            t.error,
        ] {
            assert!(!matches!(color, Color::Rgb(..) | Color::Indexed(_)), "{color:?}");
        }
    }

    #[test]
    fn cycling_visits_every_builtin() {
        let start = Theme::resolve(DEFAULT_THEME, Path::new(".")).unwrap();
        let mut theme = start.next_builtin();
        let mut seen = 1;
        while theme.name != start.name {
            theme = theme.next_builtin();
            seen += 1;
        }
        assert_eq!(seen, Theme::builtin_names().count());
    }

    #[test]
    fn bad_theme_names_and_colours_are_explained() {
        let error = Theme::resolve("neon", Path::new(".")).unwrap_err();
        assert!(error.contains("unknown theme `neon`") && error.contains("ansi16, dark, light"), "{error}");
        let dark = BUILTIN_THEMES.iter().find(|(name, _)| *name == "dark").unwrap().1;
        let error = Theme::parse("x", &dark.replace("#1b1d27", "sky-ish")).unwrap_err();
        assert!(error.contains("colors.background: `sky-ish` is not a colour"), "{error}");
    }
}
