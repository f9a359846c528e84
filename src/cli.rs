//! The command line: `easel [PROJECT_DIR]` opens the workbench, subcommands
//! do one job each without it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::project::{self, Project};
use crate::tui::{self, Exit, Theme};

#[derive(Debug, Parser)]
#[command(
    name = "easel",
    version,
    about = "A terminal workbench for training your own image generator (Stable Diffusion LoRA)."
)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Project folder to open in the workbench (default: the current folder).
    pub project: Option<PathBuf>,

    /// Colour theme for this session: dark, light, ansi16, or a theme .toml file.
    #[arg(long, value_name = "NAME|FILE")]
    pub theme: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a project folder with a commented project.toml, dataset/, runs/ and cache/.
    Init {
        /// The folder to create (or to turn into a project).
        dir: PathBuf,
        /// Display name (default: the folder's name).
        #[arg(long)]
        name: Option<String>,
        /// The trigger word for your concept.
        #[arg(long, default_value = "")]
        trigger: String,
    },
}

/// Runs the command line and turns errors into a message and an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("easel: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Some(Command::Init { dir, name, trigger }) => init(&dir, name.as_deref(), &trigger),
        None => workbench(cli.project.as_deref().unwrap_or(Path::new(".")), cli.theme.as_deref()),
    }
}

fn init(dir: &Path, name: Option<&str>, trigger: &str) -> anyhow::Result<ExitCode> {
    let project = project::init(dir, name, trigger)?;
    println!("Created project “{}” in {}:", project.name(), dir.display());
    println!("  project.toml   settings, commented");
    println!("  dataset/       put your images here, each with a .txt caption");
    println!("  runs/          training runs");
    println!("  cache/         derived data, safe to delete");
    println!(
        "Next: copy images into {}, then open the workbench with `easel {}`.",
        project.dataset_dir().display(),
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn workbench(dir: &Path, theme_override: Option<&str>) -> anyhow::Result<ExitCode> {
    // Everything that can fail on bad input is checked before the terminal
    // is touched, so an error leaves the shell exactly as it was.
    let project = Project::open(dir)?;
    let theme = match (theme_override, &project.config.theme) {
        (Some(spec), _) => Theme::resolve(spec, Path::new(".")).map_err(|e| anyhow::anyhow!("--theme: {e}"))?,
        (None, Some(spec)) => Theme::resolve(spec, &project.root).map_err(|e| project.config_error("theme", e))?,
        (None, None) => Theme::resolve(tui::theme::DEFAULT_THEME, &project.root).map_err(anyhow::Error::msg)?,
    };
    if !tui::is_interactive() {
        anyhow::bail!(
            "the workbench needs an interactive terminal (stdin and stdout are not both a TTY); \
             for scripts, use the subcommands in `easel --help`"
        );
    }
    Ok(match tui::run(project, theme)? {
        Exit::Quit => ExitCode::SUCCESS,
        // The shell convention for "ended by signal N".
        Exit::Signal(number) => ExitCode::from(128 + number as u8),
    })
}
