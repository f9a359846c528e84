//! `easel lora …`: the LoRA tools on the command line.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::Subcommand;

use crate::model::lora_file::{self, ExportOptions, LoraFormat};

#[derive(Debug, Subcommand)]
pub enum LoraCommand {
    /// What a LoRA file holds: format, family, modules, ranks, training metadata, likely trigger words, problems.
    Info {
        file: PathBuf,
        /// Print the report as JSON, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Rewrite a LoRA in the other format (kohya ⇄ PEFT), metadata carried over, local paths removed.
    Convert {
        file: PathBuf,
        #[arg(long, value_enum)]
        to: LoraFormat,
        /// Where to write (default: beside FILE, named `<stem>.<format>.safetensors`).
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        output: OutputArgs,
    },
}

/// Options of every command that writes a LoRA file.
#[derive(Debug, Clone, clap::Args)]
pub struct OutputArgs {
    /// The name tools show for it (`modelspec.title`, `ss_output_name`).
    #[arg(long)]
    pub title: Option<String>,
    /// Keep no training metadata (tags, dataset, seed, times): only what says what the file is.
    #[arg(long)]
    pub strip_metadata: bool,
    /// Replace OUT if it exists.
    #[arg(long)]
    pub force: bool,
}

impl OutputArgs {
    /// Refuses to write over `out` unless asked, and ever over an input.
    pub fn check(&self, out: &Path, inputs: &[&Path]) -> Result<()> {
        let same =
            |a: &Path, b: &Path| a == b || a.canonicalize().ok().is_some_and(|a| Some(a) == b.canonicalize().ok());
        if inputs.iter().any(|input| same(out, input)) {
            bail!("{}: is also an input; write the result to another file", out.display());
        }
        if out.exists() && !self.force {
            bail!("{}: already exists (use --force to replace it)", out.display());
        }
        Ok(())
    }

    pub fn export(&self, format: LoraFormat) -> ExportOptions {
        ExportOptions { format, title: self.title.clone(), strip_metadata: self.strip_metadata }
    }
}

fn default_out(file: &Path, suffix: &str) -> PathBuf {
    let stem = file.file_stem().map_or_else(|| "lora".into(), |s| s.to_string_lossy().into_owned());
    file.with_file_name(format!("{stem}.{suffix}.safetensors"))
}

pub fn run(command: LoraCommand) -> Result<()> {
    match command {
        LoraCommand::Info { file, json } => {
            let info = super::info::inspect(&file)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                print!("{}", super::info::text(&info));
            }
        }
        LoraCommand::Convert { file, to, out, output } => {
            let suffix = match to {
                LoraFormat::Kohya => "kohya",
                LoraFormat::Peft => "peft",
            };
            let out = out.unwrap_or_else(|| default_out(&file, suffix));
            output.check(&out, &[&file])?;
            let written = lora_file::export(&file, &out, &output.export(to))?;
            println!(
                "wrote {} ({}, {} modules, from {})",
                out.display(),
                to.label(),
                written.modules.len(),
                written.format.label()
            );
        }
    }
    Ok(())
}
