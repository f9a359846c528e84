//! The command line: `easel [PROJECT_DIR]` opens the workbench, subcommands
//! do one job each without it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::console::{end_on_closed_pipe, signal_exit_code};
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
    /// Render the evaluation grid of a run (prompt × seed × LoRA scale × checkpoint) into contact sheets and eval.json
    Eval {
        /// The project folder.
        project: PathBuf,
        /// The run to evaluate (default: the newest).
        #[arg(long)]
        run: Option<String>,
        /// Checkpoints: all, last, best (lowest validation loss) or steps like 200,400 (default: project.toml's).
        #[arg(long, value_parser = crate::evaluate::command::parse_checkpoints)]
        checkpoints: Option<crate::project::Checkpoints>,
        /// LoRA scales, like 0,0.5,1 (default: project.toml's).
        #[arg(long, value_delimiter = ',')]
        scales: Option<Vec<f64>>,
        /// Seeds, like 1,2,3 (default: project.toml's).
        #[arg(long, value_delimiter = ',')]
        seeds: Option<Vec<u64>>,
    },
    /// Train the project's LoRA without the workbench (progress on a terminal, plain lines in logs);
    /// Ctrl-C stops it with a checkpoint (exit status 130; 143 for SIGTERM, 129 for SIGHUP).
    Train {
        /// The project folder.
        project: PathBuf,
        /// Train this many steps instead of project.toml's `train.steps`.
        #[arg(long)]
        steps: Option<u32>,
        /// Continue a run from its last checkpoint: the newest run, or the one named.
        #[arg(long, value_name = "RUN", num_args = 0..=1, default_missing_value = "", conflicts_with = "from")]
        resume: Option<String>,
        /// Roll back: train on from run RUN's checkpoint at STEP in a new run (RUN is left as it is).
        #[arg(long, value_name = "RUN@STEP", value_parser = parse_from)]
        from: Option<crate::train::Resume>,
        /// Print each new sample image below the progress, where the terminal shows images.
        #[arg(long)]
        show_samples: bool,
        /// Without a terminal, print a progress line every N steps.
        #[arg(long, default_value_t = 10, value_name = "N")]
        report_every: u64,
    },
    /// Scan the dataset for images that would harm training (blur, exposure, duplicates, size, …).
    Scan {
        /// The project folder.
        project: PathBuf,
        /// Print the report as JSON, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Caption work: lint, normalize with the vocabulary, stats, suggestions, undo, import/export.
    Captions {
        /// The project folder.
        project: PathBuf,
        #[command(subcommand)]
        action: crate::captions::command::CaptionsCommand,
    },
    /// LoRA files: inspect, convert, merge, resize, bake into a model, extract from two models.
    Lora {
        #[command(subcommand)]
        action: crate::lora::command::LoraCommand,
    },
    /// Benchmarks: `easel bench train` times a LoRA training step against the forward pass.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
    /// Draw an image from a prompt with a project's base model and newest LoRA (or any model and LoRAs).
    Generate(Box<GenerateCommand>),
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Normalize + lint of generated captions (the vocabulary rules, CLIP token counts, suggestions).
    Captions {
        #[arg(long, default_value_t = 10_000)]
        count: usize,
    },
    /// The dataset scan over generated photo-like images: cold (decoding all) and warm (cached).
    Scan {
        /// Where the images are (generated there first when missing).
        #[arg(long, default_value = "target/bench-scan")]
        dir: PathBuf,
        #[arg(long, default_value_t = 1000)]
        count: u32,
        /// Long side in pixels.
        #[arg(long, default_value_t = 1024)]
        size: u32,
        /// Also time this Python scan (benches/scan_python.py) on the same files, then report the ratio.
        #[arg(long)]
        python: Option<PathBuf>,
    },
    /// BLIP-base captions (random weights, the real architecture) of photo-like images; with --python, transformers beside it.
    Caption {
        #[arg(long, default_value_t = 8)]
        count: usize,
        /// Images per call.
        #[arg(long, default_value_t = 4)]
        batch: usize,
        /// New tokens per caption, exactly (the end token is held off on both sides, so both do the same work).
        #[arg(long, default_value_t = 20)]
        max_tokens: usize,
        /// Where the random model folder and the images are kept between runs.
        #[arg(long, default_value = "target/bench-caption")]
        dir: PathBuf,
        /// Also caption the same images with transformers (benches/caption.py; `pip install torch transformers pillow`)
        /// and report Easel's speed as a ratio to it.
        #[arg(long)]
        python: Option<PathBuf>,
    },
    /// The GPU's numerics: fused ops against the CPU, the fixture UNet against diffusers, a falling loss.
    Conformance {
        /// The repository's test fixtures folder.
        #[arg(long, default_value = "tests/fixtures")]
        fixtures: PathBuf,
        /// Architecture of the short training run whose loss must fall.
        #[arg(long, value_enum, default_value = "tiny")]
        arch: crate::bench::train::Arch,
        #[arg(long, default_value_t = 20)]
        steps: usize,
    },
    /// Merging and resizing LoRAs of SDXL's full shapes (random weights), with the memory each adds; with --python, kohya's way beside it.
    Lora {
        /// Rank of the two random LoRAs (the SVD merge keeps it, resize halves it).
        #[arg(long, default_value_t = 32)]
        rank: usize,
        /// Where the random LoRAs are written.
        #[arg(long, default_value = "target/bench-lora")]
        dir: PathBuf,
        /// Only every Nth layer (1: all of them), for a quicker run beside the slow reference.
        #[arg(long, default_value_t = 1)]
        every: usize,
        /// Also bake into a random full-size SDXL written once into DIR (about 7 GB of disk) and report the memory it adds.
        #[arg(long)]
        bake: bool,
        /// Also run these operations as kohya's scripts do them (benches/lora_tools.py; `pip install torch safetensors`)
        /// on the same files and report Easel's speed and memory as ratios to it.
        #[arg(long)]
        python: Option<PathBuf>,
    },
    /// One LoRA training step (attention, AdamW) of a random-weight UNet; with --python, diffusers + PEFT beside it.
    Train {
        #[arg(long, value_enum, default_value = "tiny")]
        arch: crate::bench::train::Arch,
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Timed steps (after two warm-up steps).
        #[arg(long, default_value_t = 10)]
        steps: usize,
        /// Image side in pixels (default: 128 for tiny, 512 for sd15, 1024 for sdxl).
        #[arg(long)]
        resolution: Option<usize>,
        /// Frozen weights' precision: f32, f16 or bf16 (default: bf16 on a GPU, f32 on a CPU).
        #[arg(long, value_parser = parse_precision)]
        precision: Option<candle_core::DType>,
        #[arg(long, default_value_t = 16)]
        rank: usize,
        /// Recompute the UNet's blocks in backward (gradient checkpointing), on both sides.
        #[arg(long)]
        checkpointing: bool,
        /// Also run this diffusers + PEFT step (benches/lora_step.py; `pip install torch diffusers peft`)
        /// on the same configuration and report Easel's speed and memory as ratios to it.
        #[arg(long)]
        python: Option<PathBuf>,
    },
}

fn parse_precision(text: &str) -> Result<candle_core::DType, String> {
    match text {
        "f32" => Ok(candle_core::DType::F32),
        other => parse_half(other),
    }
}

#[derive(Debug, clap::Args)]
pub struct GenerateCommand {
    /// Use this project's base model and its newest trained LoRA (the newest run's final LoRA, else its
    /// newest checkpoint).
    #[arg(long, value_name = "DIR", required_unless_present = "model")]
    project: Option<PathBuf>,
    /// A diffusers folder, a single-file .safetensors checkpoint, or builtin:tiny.
    #[arg(long, value_name = "PATH", conflicts_with = "project")]
    model: Option<PathBuf>,
    /// A diffusers folder whose configs replace those inferred from a single file.
    #[arg(long, value_name = "DIR")]
    config: Option<PathBuf>,
    /// A LoRA to apply, kohya or PEFT .safetensors, with an optional strength (repeatable).
    /// Given LoRAs are the only ones: with --project, they replace the project's own.
    #[arg(long = "lora", value_name = "FILE[:WEIGHT]")]
    loras: Vec<crate::generate::LoraSpec>,
    /// With --project: the base model alone, without the project's trained LoRA.
    #[arg(long, conflicts_with = "loras")]
    no_lora: bool,
    #[arg(long)]
    prompt: String,
    /// What to steer away from (classifier-free guidance's unconditional prompt).
    #[arg(long, default_value = "")]
    negative: String,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 30)]
    steps: usize,
    #[arg(long, default_value_t = 7.5)]
    guidance: f64,
    /// Image size (default: the model's native size, 128x128 for builtin:tiny).
    #[arg(long, value_name = "WxH", value_parser = crate::generate::parse_size)]
    size: Option<(usize, usize)>,
    #[arg(long, default_value = "ddim", value_parser = <crate::model::sampling::SamplerKind as std::str::FromStr>::from_str)]
    scheduler: crate::model::sampling::SamplerKind,
    /// Start from these initial latents (a .safetensors with one tensor [1,4,h/8,w/8]).
    #[arg(long, value_name = "FILE")]
    latents: Option<PathBuf>,
    /// Also write the final latents (before decoding) to this .safetensors file.
    #[arg(long, value_name = "FILE")]
    save_latents: Option<PathBuf>,
    /// Run the model in half precision: f16 or bf16.
    #[arg(long, value_name = "f16|bf16", value_parser = parse_half)]
    half: Option<candle_core::DType>,
    #[arg(long, value_name = "FILE.png")]
    out: PathBuf,
}

fn parse_half(text: &str) -> Result<candle_core::DType, String> {
    match text {
        "f16" | "fp16" => Ok(candle_core::DType::F16),
        "bf16" => Ok(candle_core::DType::BF16),
        other => Err(format!("`{other}`: use f16 or bf16")),
    }
}

/// Runs the command line and turns errors into a message and an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.may_end_at_any_write() {
        end_on_closed_pipe();
    }
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            // Not eprintln!, which panics when stderr is a closed pipe.
            let _ = writeln!(std::io::stderr(), "easel: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

impl Cli {
    /// Whether a closed pipe may end the command at any write (`easel scan
    /// --json | head`). Not training, which drops what it cannot print and
    /// goes on to its checkpointed end, nor the workbench, which must restore
    /// the terminal before it ends. The others write their files whole
    /// (atomically), so ending mid-way loses only work not yet saved, which a
    /// rerun of `eval` or `captions auto` continues.
    fn may_end_at_any_write(&self) -> bool {
        !matches!(self.command, None | Some(Command::Train { .. }))
    }
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Some(Command::Init { dir, name, trigger }) => init(&dir, name.as_deref(), &trigger),
        Some(Command::Generate(command)) => generate(*command),
        Some(Command::Bench { what: BenchCommand::Captions { count } }) => {
            println!("{}", crate::bench::captions(count)?);
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Bench { what: BenchCommand::Scan { dir, count, size, python } }) => {
            crate::bench::scan_images(&dir, count, size)?;
            println!("{}", crate::bench::scan(&dir, python.as_deref())?);
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Bench { what: BenchCommand::Caption { count, batch, max_tokens, dir, python } }) => {
            let options = crate::bench::caption::BenchCaption {
                count: count.max(1),
                batch: batch.max(1),
                max_tokens: max_tokens.max(1),
                dir,
                python,
            };
            for line in crate::bench::caption::run(&options, &crate::device::default_device())? {
                println!("{line}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Bench { what: BenchCommand::Conformance { fixtures, arch, steps } }) => {
            crate::bench::conformance::run(&fixtures, &crate::device::default_device(), arch, steps.max(2))?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Bench { what: BenchCommand::Lora { rank, dir, every, bake, python } }) => {
            let options = crate::bench::lora::BenchLora { rank: rank.max(2), dir, every, bake, python };
            for line in crate::bench::lora::run(&options)? {
                println!("{line}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Bench {
            what: BenchCommand::Train { arch, batch, steps, resolution, precision, rank, checkpointing, python },
        }) => {
            let device = crate::device::default_device();
            let dtype =
                precision.unwrap_or(if device.is_cpu() { candle_core::DType::F32 } else { candle_core::DType::BF16 });
            let resolution = resolution.unwrap_or(arch.default_resolution());
            let options = crate::bench::train::BenchTrain {
                arch,
                batch,
                steps: steps.max(1),
                resolution,
                dtype,
                rank,
                checkpointing,
                python,
            };
            for line in crate::bench::train::run(&options, &device)? {
                println!("{line}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Scan { project, json }) => scan(&project, json),
        Some(Command::Lora { action }) => {
            crate::lora::command::run(action)?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Captions { project, action }) => {
            crate::captions::command::run(&project, action)?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Eval { project, run, checkpoints, scales, seeds }) => {
            let overrides = crate::evaluate::plan::Overrides { checkpoints, scales, seeds };
            crate::evaluate::command::run(crate::evaluate::command::EvalArgs { project, run, overrides })?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Train { project, steps, resume, from, show_samples, report_every }) => {
            let resume = resume
                .map(|run| if run.is_empty() { crate::train::Resume::Latest } else { crate::train::Resume::Run(run) });
            train(&project, steps, resume.or(from), show_samples, report_every)
        }
        None => workbench(cli.project.as_deref().unwrap_or(Path::new(".")), cli.theme.as_deref()),
    }
}

fn train(
    dir: &Path,
    steps: Option<u32>,
    resume: Option<crate::train::Resume>,
    show_samples: bool,
    report_every: u64,
) -> anyhow::Result<ExitCode> {
    let project = Project::open(dir)?;
    let faults = crate::train::faults::Faults::from_env();
    if let Some(announcement) = faults.announcement() {
        let _ = writeln!(std::io::stderr(), "warning: {announcement}");
    }
    let options = crate::train::TrainOptions {
        steps,
        resume,
        device: crate::device::default_device(),
        faults,
        learning_rate: None,
    };
    let ended = crate::train::headless::run(
        project,
        crate::train::headless::HeadlessOptions { train: options, show_samples, report_every },
    )?;
    // Stopped by a signal (with its checkpoint): the status a shell expects of an interrupted command.
    Ok(ended.stopped_by.map_or(ExitCode::SUCCESS, signal_exit_code))
}

/// `--from RUN@STEP`: a run id and a checkpoint step.
fn parse_from(text: &str) -> Result<crate::train::Resume, String> {
    let usage =
        || format!("`{text}`: expected RUN@STEP, a run id and one of its checkpoint steps (like 20261130-171407@200)");
    let (run, step) = text.rsplit_once('@').ok_or_else(usage)?;
    let step = step.parse().map_err(|_| usage())?;
    if run.is_empty() {
        return Err(usage());
    }
    Ok(crate::train::Resume::Checkpoint { run: run.to_string(), step })
}

fn scan(dir: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let project = Project::open(dir)?;
    let config = &project.config;
    crate::dataset::require_images(&project.dataset_dir(), &config.caption_extension)?;
    let started = std::time::Instant::now();
    let report = crate::dataset::scan::scan(&project.dataset_dir(), &project.cache_dir(), config, &|_, _| {});
    let seconds = started.elapsed().as_secs_f64();
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let dataset = project.dataset_dir().display().to_string();
        print!("{}", crate::dataset::summary::text(&report, &dataset, config.train.resolution, seconds));
    }
    // The scan ran: success, whatever it found.
    Ok(ExitCode::SUCCESS)
}

fn generate(command: GenerateCommand) -> anyhow::Result<ExitCode> {
    let request = crate::model::sampling::SampleRequest {
        prompt: command.prompt,
        negative: command.negative,
        width: 0,
        height: 0,
        steps: command.steps,
        guidance: command.guidance,
        sampler: command.scheduler,
        seed: command.seed,
        initial_latents: None,
    };
    crate::generate::run(crate::generate::GenerateArgs {
        project: command.project,
        model: command.model,
        config_folder: command.config,
        loras: command.loras,
        no_lora: command.no_lora,
        request,
        size: command.size,
        latents: command.latents,
        out: command.out,
        save_latents: command.save_latents,
        half: command.half,
    })?;
    Ok(ExitCode::SUCCESS)
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
        Exit::Signal(number) => signal_exit_code(number),
    })
}
