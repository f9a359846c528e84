//! Embeds every `themes/*.toml` in the binary, so that `easel` works from
//! any folder and a new theme file needs no code change.

use std::fs;
use std::path::Path;

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let themes = Path::new(&manifest).join("themes");
    println!("cargo:rerun-if-changed={}", themes.display());
    let mut names: Vec<String> = fs::read_dir(&themes)
        .expect("themes/ folder")
        .filter_map(|item| {
            let path = item.ok()?.path();
            (path.extension()? == "toml").then(|| path.file_stem()?.to_str().map(str::to_string))?
        })
        .collect();
    names.sort();
    let mut code = String::from(
        "/// Built-in themes as (name, TOML text), sorted by name.\npub const BUILTIN_THEMES: &[(&str, &str)] = &[\n",
    );
    for name in &names {
        let path = themes.join(format!("{name}.toml"));
        println!("cargo:rerun-if-changed={}", path.display());
        code.push_str(&format!("    ({name:?}, include_str!({:?})),\n", path.display().to_string()));
    }
    code.push_str("];\n");
    let out = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("themes.rs");
    fs::write(out, code).expect("write themes.rs");
}
