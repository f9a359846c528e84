//! The trainer: LoRA training of a project's base model on its own OS thread,
//! steered by [`Command`]s and reporting [`Event`]s, writing everything a
//! run leaves behind into its run folder.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use candle_core::{DType, Device, Tensor, Var};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

use super::data::{self, Example, TrainingSet, purpose, rng_for};
use super::faults;
use super::optim::{self, AdamW};
pub use super::records::StepMetrics;
use super::records::{CheckpointState, MetricsRecord};
use super::run_dir::{MetricsLog, RunDir, final_lora, resident_memory_mib, unix_seconds};
use super::setup::{Prepared, attach_lora, cache_latents, config_hash, load_model, run_config, tag_frequency};
pub use super::setup::{Resume, TrainOptions};
use crate::model::checkpoint;
use crate::model::lora::LoraNetwork;
use crate::model::lora_file::{self, LoraFile, TrainingInfo};
use crate::model::pipeline::{Conditioning, StableDiffusion};
use crate::model::sampling::{self, SampleRequest, SamplerKind, SeededNoise};
use crate::model::schedule::{NoiseSchedule, PredictionType};
use crate::model::unet::AddedConditioning;
use crate::project::{Project, ProjectConfig};

/// What the operator can ask of a running trainer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Pause,
    Resume,
    /// Save a checkpoint and end the run.
    Stop,
    SampleNow,
    SaveNow,
}

/// What the trainer reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Started {
        run_id: String,
        dir: PathBuf,
        start_step: u64,
        total: u64,
        train_images: usize,
        validation_images: usize,
        /// Images left out, with the reason (unreadable, no caption, too small).
        skipped: Vec<(PathBuf, String)>,
    },
    /// Preparation progress (latent caching and the like).
    Preparing {
        what: String,
        done: usize,
        total: usize,
    },
    Step(StepMetrics),
    Validation {
        step: u64,
        loss: f64,
    },
    Samples {
        step: u64,
        paths: Vec<PathBuf>,
    },
    Checkpoint {
        step: u64,
        path: PathBuf,
    },
    /// Older checkpoints deleted after one was saved (`train.keep_checkpoints`):
    /// their steps, and how many are kept.
    Pruned {
        steps: Vec<u64>,
        keep: u32,
    },
    Paused {
        step: u64,
    },
    Resumed {
        step: u64,
    },
    /// The run ended: `lora` is the final adapter file.
    Finished {
        step: u64,
        lora: PathBuf,
        stopped: bool,
    },
    Error(String),
}

/// Runs training to the end (or a stop), reporting through `events`.
/// Errors are reported as [`Event::Error`] too.
pub fn run(
    project: &Project,
    options: &TrainOptions,
    commands: &Receiver<Command>,
    events: &Sender<Event>,
) -> Result<PathBuf> {
    let result = Trainer::prepare(project, options, events).and_then(|mut trainer| trainer.train(commands));
    if let Err(error) = &result {
        let _ = events.send(Event::Error(format!("{error:#}")));
    }
    result
}

/// A trainer on its own thread.
pub struct TrainerHandle {
    pub commands: Sender<Command>,
    pub events: Receiver<Event>,
    pub thread: std::thread::JoinHandle<Result<PathBuf>>,
}

pub fn spawn(project: Project, options: TrainOptions) -> TrainerHandle {
    let (command_tx, command_rx) = std::sync::mpsc::channel();
    let (event_tx, event_rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("easel-trainer".into())
        .spawn(move || {
            let device = options.device.clone();
            crate::device::on_compute_threads(&device, move || run(&project, &options, &command_rx, &event_tx))
        })
        .expect("spawn the trainer thread");
    TrainerHandle { commands: command_tx, events: event_rx, thread }
}

struct Trainer<'a> {
    project_name: String,
    config: ProjectConfig,
    run: RunDir,
    model: StableDiffusion,
    network: LoraNetwork,
    vars: Vec<Var>,
    optimizer: AdamW,
    schedule: NoiseSchedule,
    train: Vec<Prepared>,
    train_examples: Vec<Example>,
    validation: Vec<Prepared>,
    /// Prompt embeddings by caption, when the text encoder is frozen and
    /// captions do not change between steps.
    text_cache: Option<HashMap<String, Conditioning>>,
    start_step: u64,
    total: u64,
    batches_per_epoch: u64,
    validation_losses: HashMap<u64, f64>,
    metrics: MetricsLog,
    events: &'a Sender<Event>,
    options: TrainOptions,
    started_at: f64,
    /// The run's lock (`RunDir::hold`), let go of before the end is reported.
    hold: Option<std::fs::File>,
}

impl<'a> Trainer<'a> {
    fn prepare(project: &Project, options: &TrainOptions, events: &'a Sender<Event>) -> Result<Self> {
        let (start, config, config_text) = run_config(project, options)?;
        let train_config = &config.train;
        let mut model = load_model(project, &config, &options.device)?;
        let (network, vars) = attach_lora(&mut model, &config, &options.device)?;
        let optimizer = AdamW::new(vars.clone(), train_config.weight_decay)?;

        let set = TrainingSet::read(&project.dataset_dir(), &config)?;
        // The run folder only once the dataset has been read: a bad dataset leaves no empty run behind.
        let run = start.folder(&project.runs_dir(), &config_text)?;
        let hold = Some(run.hold()?);
        let batch = train_config.batch_size as usize;
        let batches_per_epoch = data::epoch_batches(&set.train, batch, train_config.seed, 0).len() as u64;
        let (train, validation) = cache_latents(&model, &set, &project.cache_dir().join("latents"), events)?;
        let caches_text = !config.lora.text_encoder && !train_config.shuffle_tags;

        let mut trainer = Self {
            project_name: project.name(),
            metrics: MetricsLog::open(&run.metrics_path())?,
            run,
            schedule: NoiseSchedule::new(model.scheduler.clone()),
            model,
            network,
            vars,
            optimizer,
            train,
            train_examples: set.train,
            validation,
            text_cache: caches_text.then(HashMap::new),
            start_step: 0,
            total: u64::from(train_config.steps),
            batches_per_epoch: batches_per_epoch.max(1),
            validation_losses: HashMap::new(),
            events,
            options: options.clone(),
            started_at: unix_seconds(),
            config,
            hold,
        };
        if options.resume.is_some() {
            trainer.restore_checkpoint()?;
            // The metrics file was rewritten (a new file): append to that one.
            trainer.metrics = MetricsLog::open(&trainer.run.metrics_path())?;
        }
        let _ = events.send(Event::Started {
            run_id: trainer.run.id.clone(),
            dir: trainer.run.dir.clone(),
            start_step: trainer.start_step,
            total: trainer.total,
            train_images: trainer.train.len(),
            validation_images: trainer.validation.len(),
            skipped: set.skipped,
        });
        Ok(trainer)
    }

    /// Loads the newest complete checkpoint: LoRA weights, optimizer moments, step.
    fn restore_checkpoint(&mut self) -> Result<()> {
        let Some(&step) = self.run.checkpoint_steps().last() else {
            bail!("{}: no complete checkpoint to resume from", self.run.dir.display());
        };
        let (lora_path, state_path) = self.run.checkpoint_paths(step);
        let bytes = std::fs::read(&state_path).with_context(|| format!("cannot read {}", state_path.display()))?;
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| anyhow!("{}: not a trainer state file: {e}", state_path.display()))?;
        let state = CheckpointState::from_metadata(&header.metadata().clone().unwrap_or_default(), &state_path)?;
        if state.config_hash != config_hash(&self.config) {
            bail!("{}: written with another configuration, cannot resume from it", state_path.display());
        }
        let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)?;
        self.optimizer.restore(&tensors, state.optimizer_steps)?;
        self.validation_losses = state.validation_losses;
        // The LoRA file holds the variables; set ours from it, module by module.
        let file = LoraFile::read(&lora_path, &mut self.model.clone())?;
        let by_path: HashMap<&str, _> = file.modules.iter().map(|m| (m.path.as_str(), m)).collect();
        for module in &self.network.modules {
            let saved = by_path
                .get(module.path.as_str())
                .ok_or_else(|| anyhow!("{}: lacks `{}`", lora_path.display(), module.path))?;
            module.down.set(&saved.down.to_dtype(DType::F32)?.to_device(module.down.device())?)?;
            module.up.set(&saved.up.to_dtype(DType::F32)?.to_device(module.up.device())?)?;
        }
        self.run.truncate_metrics(step)?;
        self.start_step = step;
        Ok(())
    }

    fn train(&mut self, commands: &Receiver<Command>) -> Result<PathBuf> {
        let config = self.config.train.clone();
        if self.start_step == 0 && config.sample_every > 0 {
            self.render_samples(0)?;
        }
        self.metrics.append(&MetricsRecord::Started { step: self.start_step })?;
        let clock = Instant::now();
        let mut images_done = 0usize;
        let mut step = self.start_step;
        let mut paused = false;
        let mut stopped = false;
        while step < self.total {
            // Commands: non-blocking while running, blocking while paused.
            loop {
                let command =
                    if paused { commands.recv().map_err(|_| TryRecvError::Disconnected) } else { commands.try_recv() };
                match command {
                    Ok(Command::Pause) if !paused => {
                        paused = true;
                        let _ = self.events.send(Event::Paused { step });
                    }
                    Ok(Command::Resume) if paused => {
                        paused = false;
                        let _ = self.events.send(Event::Resumed { step });
                    }
                    Ok(Command::Stop) => {
                        stopped = true;
                        break;
                    }
                    Ok(Command::SampleNow) => self.render_samples(step)?,
                    Ok(Command::SaveNow) => self.save_checkpoint(step)?,
                    Ok(_) => {}
                    Err(TryRecvError::Empty) if !paused => break,
                    Err(TryRecvError::Empty) => {}
                    // Nobody can command us any more: carry on.
                    Err(TryRecvError::Disconnected) if paused => paused = false,
                    Err(TryRecvError::Disconnected) => break,
                }
            }
            if stopped {
                break;
            }
            let (loss, grad_norm, images) = self.optimizer_step(step)?;
            step += 1;
            images_done += images;
            if step.is_multiple_of(u64::from(config.log_every)) || step == self.total {
                let elapsed = clock.elapsed().as_secs_f64();
                let metrics = StepMetrics {
                    step,
                    total: self.total,
                    epoch: (step - 1) * u64::from(config.gradient_accumulation) / self.batches_per_epoch,
                    loss,
                    lr: optim::learning_rate(&config, step - 1),
                    grad_norm,
                    samples_per_second: images_done as f64 / elapsed.max(1e-9),
                    elapsed_seconds: elapsed,
                    memory_mib: resident_memory_mib(),
                };
                self.metrics.append(&MetricsRecord::Step(metrics.clone()))?;
                let _ = self.events.send(Event::Step(metrics));
            }
            self.options.faults.hold_if_asked(step);
            let every = |n: u32| n > 0 && step.is_multiple_of(u64::from(n));
            if every(config.validate_every) {
                self.validate(step)?;
            }
            if every(config.sample_every) && step < self.total {
                self.render_samples(step)?;
            }
            if every(config.save_every) && step < self.total {
                self.save_checkpoint(step)?;
            }
        }
        if !stopped && config.sample_every > 0 {
            self.render_samples(step)?;
        }
        self.save_checkpoint(step)?;
        let lora = final_lora(&self.run.dir, &self.project_name);
        // Atomic: `easel generate` may read the newest run's LoRA at any moment.
        crate::fsutil::atomic_copy(&self.run.checkpoint_paths(step).0, &lora)
            .with_context(|| format!("cannot write {}", lora.display()))?;
        self.metrics.append(&MetricsRecord::Finished { lora: lora.clone(), step, stopped })?;
        // Whoever hears of the end finds the run no longer held.
        self.hold = None;
        let _ = self.events.send(Event::Finished { step, lora: lora.clone(), stopped });
        Ok(lora)
    }

    /// The conditioning for `captions` at `size`: cached when it cannot change.
    fn conditioning(&mut self, captions: &[String], size: (usize, usize)) -> Result<Conditioning> {
        let Some(cache) = &mut self.text_cache else {
            let prompts: Vec<&str> = captions.iter().map(String::as_str).collect();
            return self.model.encode_prompts(&prompts, size);
        };
        let mut parts = Vec::with_capacity(captions.len());
        for caption in captions {
            let key = format!("{caption}\u{0}{size:?}");
            if !cache.contains_key(&key) {
                let encoded = self.model.encode_prompts(&[caption.as_str()], size)?;
                // Cached embeddings must not keep a graph alive.
                let detached = Conditioning {
                    context: encoded.context.detach(),
                    added: encoded
                        .added
                        .map(|a| AddedConditioning { text_embeds: a.text_embeds.detach(), time_ids: a.time_ids }),
                };
                cache.insert(key.clone(), detached);
            }
            parts.push(cache[&key].clone());
        }
        let mut stacked = parts[0].clone();
        for part in &parts[1..] {
            stacked = Conditioning::concat(&stacked, part)?;
        }
        Ok(stacked)
    }

    /// The denoising loss of a batch at given timesteps and noise; per-sample
    /// MSE weighted by min-SNR-γ when set, then averaged.
    fn batch_loss(
        &mut self,
        latents: &Tensor,
        noise: &Tensor,
        timesteps: &[usize],
        captions: &[String],
    ) -> Result<Tensor> {
        let (_, _, h, w) = latents.dims4()?;
        let factor = self.model.vae.config.spatial_factor();
        let conditioning = self.conditioning(captions, (h * factor, w * factor))?;
        let noisy = self.schedule.add_noise(latents, noise, timesteps)?;
        let target = match self.model.scheduler.prediction_type {
            PredictionType::VPrediction => self.schedule.velocity(latents, noise, timesteps)?,
            PredictionType::Sample => latents.clone(),
            PredictionType::Epsilon => noise.clone(),
        };
        let device = latents.device();
        let t = Tensor::from_vec(timesteps.iter().map(|&t| t as f32).collect(), timesteps.len(), device)?;
        let prediction = self
            .model
            .unet
            .forward(&noisy, &t, &conditioning.context, conditioning.added.as_ref())?
            .to_dtype(DType::F32)?;
        let per_sample = (prediction - target)?.sqr()?.flatten_from(1)?.mean(1)?;
        let gamma = self.config.train.min_snr_gamma;
        if gamma <= 0.0 {
            return Ok(per_sample.mean_all()?);
        }
        let weights: Vec<f32> = timesteps
            .iter()
            .map(|&t| {
                let alpha = f64::from(self.schedule.alphas_cumprod[t]);
                let snr = alpha / (1.0 - alpha);
                let weight = match self.model.scheduler.prediction_type {
                    PredictionType::VPrediction => snr.min(gamma) / (snr + 1.0),
                    _ => snr.min(gamma) / snr,
                };
                weight as f32
            })
            .collect();
        let weights = Tensor::from_vec(weights, timesteps.len(), device)?;
        Ok((per_sample * weights)?.mean_all()?)
    }

    /// Noise and timesteps for micro-batch `index`, drawn from its own seed.
    fn draw_noise(&self, shape: &[usize], index: u64) -> Result<(Tensor, Vec<usize>)> {
        let train = &self.config.train;
        let mut rng = rng_for(train.seed, purpose::NOISE, index);
        let count: usize = shape.iter().product();
        let values: Vec<f32> = (0..count).map(|_| StandardNormal.sample(&mut rng)).collect();
        let device = &self.model.device;
        let mut noise = Tensor::from_vec(values, shape, device)?;
        if train.noise_offset > 0.0 {
            let offsets: Vec<f32> = (0..shape[0] * shape[1]).map(|_| StandardNormal.sample(&mut rng)).collect();
            let offsets = Tensor::from_vec(offsets, (shape[0], shape[1], 1, 1), device)?;
            noise = noise.broadcast_add(&(offsets * train.noise_offset)?)?;
        }
        let timesteps = (0..shape[0]).map(|_| rng.random_range(0..self.schedule.alphas_cumprod.len())).collect();
        Ok((noise, timesteps))
    }

    /// One optimizer step (with accumulation): returns loss, gradient norm, images.
    fn optimizer_step(&mut self, step: u64) -> Result<(f64, f64, usize)> {
        let train = self.config.train.clone();
        let accumulation = u64::from(train.gradient_accumulation);
        let mut grads = HashMap::new();
        let mut loss_sum: Option<Tensor> = None;
        let mut images = 0;
        let injected = self.options.faults.nan_at == Some(step + 1);
        for micro in 0..accumulation {
            let index = step * accumulation + micro;
            let (epoch, position) = (index / self.batches_per_epoch, index % self.batches_per_epoch);
            let batches = data::epoch_batches(&self.train_examples, train.batch_size as usize, train.seed, epoch);
            let batch = &batches[position as usize % batches.len()];
            let mut caption_rng = rng_for(train.seed, purpose::CAPTION, index);
            let captions: Vec<String> = batch
                .iter()
                .map(|&i| data::training_caption(&self.train[i].caption, &train, &mut caption_rng))
                .collect();
            let latents = Tensor::stack(&batch.iter().map(|&i| self.train[i].latent.clone()).collect::<Vec<_>>(), 0)?;
            let (noise, timesteps) = self.draw_noise(latents.dims(), index)?;
            let mut loss = self.batch_loss(&latents, &noise, &timesteps, &captions)?;
            if injected {
                loss = (loss * f64::NAN)?;
            }
            images += batch.len();
            optim::accumulate(&mut grads, optim::collect_grads(&self.vars, &checkpoint::backward(&loss)?))?;
            let loss = loss.detach();
            loss_sum = Some(match loss_sum {
                Some(sum) => (sum + loss)?,
                None => loss,
            });
        }
        let mut grads = optim::FlatGrads::new(&self.vars, &grads)?;
        grads.scale(1.0 / accumulation as f64)?;
        let grad_norm = grads.clip(train.max_grad_norm)?;
        self.optimizer.step(&grads, optim::learning_rate(&train, step))?;
        // The step's only reads from the device, once all of it is queued. A
        // non-finite loss has spoilt the weights in memory by now, but the
        // run stops here and nothing after the last checkpoint is saved.
        let loss_sum = loss_sum.context("gradient_accumulation is at least 1")?;
        let loss = f64::from(loss_sum.to_scalar::<f32>()?) / accumulation as f64;
        if !loss.is_finite() {
            let last = self.run.checkpoint_steps().last().map_or("none yet".to_string(), |s| format!("step {s}"));
            let cause = if injected { format!(" (injected by {})", faults::NAN_STEP) } else { String::new() };
            bail!(
                "the loss became {loss} at step {}{cause}: training stopped; the last good checkpoint is {last}",
                step + 1
            );
        }
        Ok((loss, f64::from(grad_norm.to_scalar::<f32>()?), images))
    }

    /// Validation loss over the held-out images at fixed timesteps and noise,
    /// so values from different steps compare.
    fn validate(&mut self, step: u64) -> Result<()> {
        if self.validation.is_empty() {
            return Ok(());
        }
        const TIMESTEPS: [usize; 5] = [100, 300, 500, 700, 900];
        let mut total = 0.0;
        for index in 0..self.validation.len() {
            let latent = self.validation[index].latent.unsqueeze(0)?;
            let latents = Tensor::cat(&vec![&latent; TIMESTEPS.len()], 0)?;
            let mut rng = rng_for(self.config.train.seed, purpose::VALIDATION, index as u64);
            let count = latents.elem_count();
            let values: Vec<f32> = (0..count).map(|_| StandardNormal.sample(&mut rng)).collect();
            let noise = Tensor::from_vec(values, latents.dims(), latents.device())?;
            let captions = vec![self.validation[index].caption.clone(); TIMESTEPS.len()];
            let loss = self.batch_loss(&latents, &noise, &TIMESTEPS, &captions)?.detach();
            total += f64::from(loss.to_scalar::<f32>()?);
        }
        let loss = total / self.validation.len() as f64;
        self.validation_losses.insert(step, loss);
        self.metrics.append(&MetricsRecord::Validation { step, val_loss: loss })?;
        let _ = self.events.send(Event::Validation { step, loss });
        Ok(())
    }

    /// Renders every sample prompt at its fixed seed into `samples/step-NNNNNN/`.
    fn render_samples(&mut self, step: u64) -> Result<()> {
        if self.config.samples.is_empty() {
            return Ok(());
        }
        let dir = self.run.samples_dir(step);
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let side = self.config.train.resolution as usize;
        let mut paths = Vec::new();
        for (index, sample) in self.config.samples.iter().enumerate() {
            let request = SampleRequest {
                prompt: sample.prompt.clone(),
                negative: sample.negative.clone(),
                width: side,
                height: side,
                steps: sample.steps as usize,
                guidance: sample.guidance,
                sampler: SamplerKind::Ddim,
                seed: sample.seed,
                initial_latents: None,
            };
            let latents =
                sampling::sample(&self.model, &request, &mut SeededNoise::new(sample.seed), &mut |_, _, _| {})?;
            let image = sampling::decode_image(&self.model, &latents.detach())?;
            let path = dir.join(format!("{index:02}-seed{}.png", sample.seed));
            let mut png = Vec::new();
            image.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;
            crate::fsutil::atomic_write(&path, &png).with_context(|| format!("cannot write {}", path.display()))?;
            paths.push(path);
        }
        self.metrics.append(&MetricsRecord::Samples { paths: paths.clone(), step })?;
        let _ = self.events.send(Event::Samples { step, paths });
        Ok(())
    }

    /// Writes the trainer state, then the LoRA (whose presence completes the
    /// checkpoint), then prunes old ones.
    fn save_checkpoint(&mut self, step: u64) -> Result<()> {
        let (lora_path, state_path) = self.run.checkpoint_paths(step);
        let metadata = CheckpointState {
            step,
            optimizer_steps: self.optimizer.steps,
            config_hash: config_hash(&self.config),
            validation_losses: self.validation_losses.clone(),
        }
        .to_metadata()?;
        let state: Vec<(String, Tensor)> = self
            .optimizer
            .state()?
            .into_iter()
            .map(|(k, v)| Ok((k, v.to_device(&Device::Cpu)?)))
            .collect::<Result<_>>()?;
        let bytes = safetensors::serialize(state, Some(metadata))
            .map_err(|e| anyhow!("cannot encode the trainer state: {e}"))?;
        crate::fsutil::atomic_write(&state_path, &bytes)
            .with_context(|| format!("cannot write {}", state_path.display()))?;

        let info = TrainingInfo {
            output_name: self.project_name.clone(),
            base_model_name: self.config.model.base.to_string(),
            resolution: (self.config.train.resolution as usize, self.config.train.resolution as usize),
            steps: step,
            num_train_images: self.train.len(),
            tag_frequency: tag_frequency(&self.train_examples, &self.config.dataset.display().to_string()),
            seed: self.config.train.seed,
            learning_rate: self.config.train.learning_rate,
            started_at: self.started_at,
            finished_at: unix_seconds(),
            trigger: self.config.trigger.clone(),
        };
        let metadata =
            lora_file::kohya_metadata(&self.network, self.model.family, self.model.scheduler.prediction_type, &info);
        lora_file::save_kohya(&lora_path, &self.network, &self.model, metadata)?;
        self.metrics.append(&MetricsRecord::Checkpoint { path: lora_path.clone(), step })?;
        let _ = self.events.send(Event::Checkpoint { step, path: lora_path });
        let keep = self.config.train.keep_checkpoints;
        let pruned = self.run.prune_checkpoints(keep as usize, &self.validation_losses);
        if !pruned.is_empty() {
            let _ = self.events.send(Event::Pruned { steps: pruned, keep });
        }
        Ok(())
    }
}
