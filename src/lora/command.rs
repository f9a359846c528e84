//! `easel lora …`: the LoRA tools on the command line.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Subcommand;

use super::factor::{RankChoice, RankRule};
use super::merge::{self, Method};
use crate::model::lora_file::{self, ExportOptions, LoraFile, LoraFormat, LoraModule};

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
    /// Combine LoRAs: `concat` is exact (ranks add up); `svd` re-factorises to --rank or --dynamic and reports the error.
    Merge {
        /// Two or more LoRA files, each with an optional weight: `a.safetensors:0.7`.
        #[arg(num_args = 2.., required = true, value_name = "FILE[:WEIGHT]")]
        inputs: Vec<super::merge::Weighted>,
        /// Where to write the LoRA (.safetensors).
        #[arg(long)]
        out: PathBuf,
        /// concat (exact) or svd (default: svd when --rank or --dynamic is given, else concat).
        #[arg(long, value_enum)]
        method: Option<super::merge::Method>,
        #[command(flatten)]
        rank: RankArgs,
        /// Output format (default: the first input's).
        #[arg(long, value_enum)]
        to: Option<LoraFormat>,
        /// Store the factors in f32 (exact), or f16/bf16 (half the size, as most shared LoRAs are).
        #[arg(long, value_enum, default_value = "f32")]
        save_precision: SavePrecision,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Re-rank one LoRA by SVD, to a fixed rank or a dynamic rule, reporting the error per module.
    Resize {
        file: PathBuf,
        #[command(flatten)]
        rank: RankArgs,
        /// Where to write the LoRA (.safetensors).
        #[arg(long)]
        out: PathBuf,
        /// Store the factors in f32 (exact), or f16/bf16 (half the size, as most shared LoRAs are).
        #[arg(long, value_enum, default_value = "f32")]
        save_precision: SavePrecision,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Fold LoRAs into a model: a diffusers folder, or (--out X.safetensors) a single file in the original layout.
    Bake {
        /// The base model: a diffusers folder or a single-file .safetensors checkpoint.
        #[arg(long)]
        model: PathBuf,
        /// A LoRA with an optional weight (repeatable): `--lora style.safetensors:0.8`.
        #[arg(long = "lora", required = true, value_name = "FILE[:WEIGHT]")]
        loras: Vec<super::merge::Weighted>,
        /// A new folder (diffusers), or a .safetensors file (LDM layout for SD1/SD2, SGM for SDXL).
        #[arg(long)]
        out: PathBuf,
        /// Replace OUT if it is a file that exists.
        #[arg(long)]
        force: bool,
    },
    /// A LoRA from the difference of two models of one family (a fine-tune and its base), by SVD per layer.
    Extract {
        /// The base model (folder or single file).
        #[arg(long)]
        base: PathBuf,
        /// The fine-tuned model (folder or single file).
        #[arg(long)]
        tuned: PathBuf,
        #[command(flatten)]
        rank: RankArgs,
        /// Where to write the LoRA (.safetensors).
        #[arg(long)]
        out: PathBuf,
        /// Which UNet layers: attention (to_q/k/v/out) or transformer (also proj_in/out and the feed-forward).
        #[arg(long, value_enum, default_value = "transformer")]
        targets: crate::model::lora::LoraTargets,
        /// Leave the text encoders out.
        #[arg(long)]
        no_text_encoders: bool,
        /// Layers whose largest change is at most this count as unchanged and are left out.
        #[arg(long, default_value_t = 1e-4)]
        min_diff: f64,
        /// Store the factors in f32 (exact), or f16/bf16 (half the size, as most shared LoRAs are).
        #[arg(long, value_enum, default_value = "f32")]
        save_precision: SavePrecision,
        #[command(flatten)]
        output: OutputArgs,
    },
}

/// The dtype of the factors a tool makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SavePrecision {
    F32,
    F16,
    Bf16,
}

impl SavePrecision {
    fn dtype(self) -> candle_core::DType {
        match self {
            Self::F32 => candle_core::DType::F32,
            Self::F16 => candle_core::DType::F16,
            Self::Bf16 => candle_core::DType::BF16,
        }
    }
}

/// The rank an SVD keeps.
#[derive(Debug, Clone, clap::Args)]
pub struct RankArgs {
    /// Keep this rank in every module (with --dynamic: the most any module keeps, as kohya's --new_rank).
    #[arg(long, value_parser = parse_fixed_rank)]
    pub rank: Option<RankRule>,
    /// Pick each module's rank from its singular values: sv_ratio=T, sv_fro=T or sv_cumulative=T (kohya's rules).
    #[arg(long, value_parser = parse_dynamic_rank)]
    pub dynamic: Option<RankRule>,
}

impl RankArgs {
    fn rule(&self) -> Option<RankChoice> {
        let cap = |rule: RankRule| match rule {
            RankRule::Fixed(rank) => Some(rank),
            _ => None,
        };
        match (self.dynamic, self.rank) {
            (Some(rule), rank) => Some(RankChoice { rule, at_most: rank.and_then(cap) }),
            (None, rank) => rank.map(RankChoice::from),
        }
    }
}

fn parse_fixed_rank(text: &str) -> Result<RankRule, String> {
    match text.parse::<usize>() {
        Ok(0) | Err(_) => Err(format!("`{text}`: a rank is a whole number of at least 1")),
        Ok(rank) => Ok(RankRule::Fixed(rank)),
    }
}

fn parse_dynamic_rank(text: &str) -> Result<RankRule, String> {
    match text.parse::<RankRule>() {
        Ok(RankRule::Fixed(_)) => Err(format!(
            "`{text}`: use --rank for a fixed rank; --dynamic takes sv_ratio=T, sv_fro=T or sv_cumulative=T"
        )),
        Ok(rule) => Ok(rule),
        Err(e) => Err(format!("{e:#}")),
    }
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
    pub fn export(&self, format: LoraFormat) -> ExportOptions {
        ExportOptions { format, title: self.title.clone(), strip_metadata: self.strip_metadata }
    }
}

/// Refuses to write over `out` unless `force`, and ever over an input.
fn check_output(out: &Path, inputs: &[&Path], force: bool) -> Result<()> {
    let same = |a: &Path, b: &Path| a == b || a.canonicalize().ok().is_some_and(|a| Some(a) == b.canonicalize().ok());
    if inputs.iter().any(|input| same(out, input)) {
        bail!("{}: is also an input; write the result to another file", out.display());
    }
    if out.exists() && !force {
        bail!("{}: already exists (use --force to replace it)", out.display());
    }
    Ok(())
}

fn stem(file: &Path) -> String {
    file.file_stem().map_or_else(|| "lora".into(), |s| s.to_string_lossy().into_owned())
}

fn default_out(file: &Path, suffix: &str) -> PathBuf {
    file.with_file_name(format!("{}.{suffix}.safetensors", stem(file)))
}

/// Writes a made file with the output options' metadata and says so.
fn write(file: &LoraFile, out: &Path, format: LoraFormat, output: &OutputArgs, precision: SavePrecision) -> Result<()> {
    let mut file = file.clone();
    for module in &mut file.modules {
        module.down = module.down.to_dtype(precision.dtype())?;
        module.up = module.up.to_dtype(precision.dtype())?;
    }
    file.metadata = output.export(format).header(&file.metadata);
    file.save(out, format)?;
    let ranks = merge::rank_range(file.modules.iter().map(LoraModule::rank));
    println!(
        "wrote {} ({}, {}, {ranks})",
        out.display(),
        format.label(),
        crate::words::counted(file.modules.len(), "module")
    );
    Ok(())
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
            check_output(&out, &[&file], output.force)?;
            let written = lora_file::export(&file, &out, &output.export(to))?;
            println!(
                "wrote {} ({}, {}, from {})",
                out.display(),
                to.label(),
                crate::words::counted(written.modules.len(), "module"),
                written.format.label()
            );
        }
        LoraCommand::Merge { inputs, out, method, rank, to, save_precision, output } => {
            let rule = match (method, rank.rule()) {
                (Some(Method::Concat), Some(_)) => {
                    bail!("--method concat keeps every rank; --rank and --dynamic are for svd")
                }
                (Some(Method::Svd), None) => bail!("--method svd needs --rank R or --dynamic RULE"),
                (_, rule) => rule,
            };
            let paths: Vec<&Path> = inputs.iter().map(|i| i.path.as_path()).collect();
            check_output(&out, &paths, output.force)?;
            let files = merge::open_inputs(&inputs)?;
            let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
            let (merged, report) = merge::merge(&files, &names, rule)?;
            let titles: Vec<String> = files.iter().zip(&paths).map(|((f, _), p)| merge::title_of(f, p)).collect();
            let how = match rule {
                None => "exact merge (concat)".to_string(),
                Some(rule) => format!("SVD merge ({rule})"),
            };
            let mut merged = merged;
            let title = output.title.clone().unwrap_or_else(|| stem(&out));
            merged.metadata = merge::merged_metadata(&files, &titles, &how, &title);
            let format = to.unwrap_or(merged.format);
            write(&merged, &out, format, &output, save_precision)?;
            if let Some(report) = report {
                print!("{}", report.table(12));
            }
        }
        LoraCommand::Resize { file, rank, out, save_precision, output } => {
            let Some(rule) = rank.rule() else { bail!("resize needs --rank R or --dynamic RULE") };
            check_output(&out, &[&file], output.force)?;
            let input = LoraFile::open(&file)?;
            let (mut resized, report) =
                merge::merge(&[(input.clone(), 1.0)], &[file.display().to_string()], Some(rule))?;
            let report = report.expect("an SVD merge reports its error");
            let mut metadata = input.metadata.clone();
            let comment = format!("resized with Easel ({rule}), overall error {:.3} %", report.overall() * 100.0);
            metadata.insert("ss_training_comment".into(), comment);
            let ranks: std::collections::BTreeSet<usize> = resized.modules.iter().map(|m| m.rank()).collect();
            let dim = if ranks.len() == 1 {
                ranks.first().map(usize::to_string).unwrap_or_default()
            } else {
                "Dynamic".into()
            };
            metadata.insert("ss_network_dim".into(), dim.clone());
            metadata.insert("ss_network_alpha".into(), dim);
            resized.metadata = metadata;
            write(&resized, &out, input.format, &output, save_precision)?;
            print!("{}", report.table(12));
        }
        LoraCommand::Bake { model, loras, out, force } => {
            let inputs: Vec<&Path> = loras.iter().map(|l| l.path.as_path()).chain([model.as_path()]).collect();
            check_output(&out, &inputs, force)?;
            if force && out.is_file() {
                std::fs::remove_file(&out).with_context(|| format!("cannot replace {}", out.display()))?;
            }
            eprintln!("baking {} LoRA(s) into {} …", loras.len(), model.display());
            let report = super::bake::bake(&model, &loras, &out)?;
            println!(
                "wrote {}: {} changed, {} copied unchanged",
                out.display(),
                crate::words::counted(report.edited.len(), "layer"),
                crate::words::counted(report.unchanged, "tensor")
            );
            for left in &report.left_out {
                println!("  not copied (would still hold the old weights): {}", left.display());
            }
        }
        LoraCommand::Extract {
            base,
            tuned,
            rank,
            out,
            targets,
            no_text_encoders,
            min_diff,
            save_precision,
            output,
        } => {
            let Some(rule) = rank.rule() else { bail!("extract needs --rank R or --dynamic RULE") };
            check_output(&out, &[&base, &tuned], output.force)?;
            let options = super::extract::ExtractOptions { rule, targets, text_encoders: !no_text_encoders, min_diff };
            let mut extracted = super::extract::extract(&base, &tuned, &options)?;
            let title = output.title.clone().unwrap_or_else(|| stem(&out));
            extracted.file.metadata.insert("modelspec.title".into(), title.clone());
            extracted.file.metadata.insert("ss_output_name".into(), title);
            write(&extracted.file, &out, LoraFormat::Kohya, &output, save_precision)?;
            if extracted.unchanged > 0 {
                println!(
                    "{} left out: unchanged (largest change ≤ {min_diff})",
                    crate::words::counted(extracted.unchanged, "layer")
                );
            }
            print!("{}", extracted.report.table(12));
        }
    }
    Ok(())
}
