//! Drafting captions with a model (`easel captions auto`, the Captions
//! pane's background run): which images get a draft, then batch by batch
//! decode, caption, normalize and save, each batch's drafts written before
//! the next batch starts. A kill loses at most the batch under way; a rerun
//! skips every image that already has a draft, so it continues.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;
use rayon::prelude::*;

use super::drafts::{self, Draft, Drafts};
use super::{Caption, CaptionContext};
use crate::captioner::{CaptionRequest, Captioner};
use crate::project::AutoCaptionConfig;

/// Which images a run drafts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scope {
    /// Images without a caption (missing or empty) and without any draft,
    /// rejected ones included.
    #[default]
    OnlyMissing,
    /// Every image without a draft awaiting review, captioned or not: the
    /// draft is then shown against the caption.
    All,
}

#[derive(Debug, Clone)]
pub struct AutoOptions {
    pub scope: Scope,
    /// Images per model call; 0: the captioner's preference.
    pub batch: usize,
    pub request: CaptionRequest,
}

impl AutoOptions {
    /// The project's `[auto_captions]` settings for a run over `scope`.
    pub fn from_settings(settings: &AutoCaptionConfig, scope: Scope) -> Self {
        let prompt = settings.prompt.trim();
        Self {
            scope,
            batch: settings.batch as usize,
            request: CaptionRequest {
                prompt: (!prompt.is_empty()).then(|| prompt.to_string()),
                max_tokens: settings.max_tokens as usize,
                min_tokens: 0,
            },
        }
    }
}

/// Where a run stands, after each batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AutoProgress {
    pub done: usize,
    pub total: usize,
    pub elapsed: Duration,
}

impl AutoProgress {
    /// The time left at the rate so far.
    pub fn eta(&self) -> Option<Duration> {
        (self.done > 0 && self.done <= self.total)
            .then(|| self.elapsed.mul_f64((self.total - self.done) as f64 / self.done as f64))
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct AutoSummary {
    /// Images the run set out to draft for.
    pub planned: usize,
    pub drafted: usize,
    /// Images that could not be decoded, with why (no draft made).
    pub unreadable: Vec<(PathBuf, String)>,
    /// Stopped before the end (the rest is drafted by a rerun).
    pub stopped: bool,
}

/// The images a run with `scope` drafts for, in dataset order, from the
/// captions as read and the stored drafts.
pub fn plan(captions: &[Caption], drafts: &Drafts, scope: Scope) -> Vec<PathBuf> {
    captions
        .iter()
        .filter(|caption| match scope {
            Scope::OnlyMissing => {
                caption.text.as_ref().is_ok_and(|text| text.as_deref().is_none_or(|t| t.trim().is_empty()))
                    && drafts.get(&caption.image).is_none()
            }
            Scope::All => !drafts.get(&caption.image).is_some_and(|draft| draft.awaits_review(caption.text())),
        })
        .map(|caption| caption.image.clone())
        .collect()
}

/// [`plan`] for the dataset as it is now.
pub fn plan_now(context: &CaptionContext, scope: Scope) -> Result<Vec<PathBuf>> {
    Ok(plan(&context.captions(), &Drafts::read(&context.dataset)?, scope))
}

/// Drafts captions for `images` (a [`plan`]). `progress` is told after
/// every batch and stops the run by returning `false`.
pub fn run(
    context: &CaptionContext,
    captioner: &mut dyn Captioner,
    images: &[PathBuf],
    options: &AutoOptions,
    progress: &mut dyn FnMut(&AutoProgress) -> bool,
) -> Result<AutoSummary> {
    let batch = if options.batch == 0 { captioner.preferred_batch() } else { options.batch }.max(1);
    let model = captioner.describe();
    let mut summary = AutoSummary { planned: images.len(), ..AutoSummary::default() };
    let started = Instant::now();
    for (index, chunk) in images.chunks(batch).enumerate() {
        let decoded: Vec<_> = chunk
            .par_iter()
            .map(|image| {
                let path = context.dataset.join(image);
                (image, image::open(&path).map(|picture| picture.to_rgb8()).map_err(|e| e.to_string()))
            })
            .collect();
        let mut readable = Vec::new();
        let mut pictures = Vec::new();
        for (image, result) in decoded {
            match result {
                Ok(picture) => {
                    readable.push(image.clone());
                    pictures.push(picture);
                }
                Err(why) => summary.unreadable.push((image.clone(), why)),
            }
        }
        if !pictures.is_empty() {
            let texts = captioner.caption(&pictures, &options.request)?;
            let made: Vec<Draft> = readable
                .into_iter()
                .zip(texts)
                .map(|(image, text)| Draft::new(image, &text, &model, &context.rules))
                .collect();
            summary.drafted += made.len();
            drafts::update(&context.dataset, |drafts| {
                made.into_iter().for_each(|draft| drafts.insert(draft));
                Ok(())
            })?;
        }
        let done = (index * batch + chunk.len()).min(images.len());
        if !progress(&AutoProgress { done, total: images.len(), elapsed: started.elapsed() }) && done < images.len() {
            summary.stopped = true;
            break;
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::Path;

    use super::*;
    use crate::project::Project;

    /// Captions each image with its width, so a test can tell them apart.
    struct Widths;

    impl Captioner for Widths {
        fn describe(&self) -> String {
            "widths".into()
        }
        fn preferred_batch(&self) -> usize {
            2
        }
        fn caption(&mut self, images: &[image::RgbImage], _: &CaptionRequest) -> Result<Vec<String>> {
            Ok(images.iter().map(|i| format!("a mug {} wide", i.width())).collect())
        }
    }

    fn project_with(dir: &Path, images: &[(&str, Option<&str>)]) -> CaptionContext {
        crate::project::init(dir, Some("test"), "ohwx").unwrap();
        let dataset = dir.join("dataset");
        for (i, (name, caption)) in images.iter().enumerate() {
            image::RgbImage::new(8 + i as u32, 8).save(dataset.join(name)).unwrap();
            if let Some(text) = caption {
                fs::write(dataset.join(name).with_extension("txt"), text).unwrap();
            }
        }
        CaptionContext::open(&Project::open(dir).unwrap()).unwrap()
    }

    fn options(scope: Scope) -> AutoOptions {
        AutoOptions::from_settings(&AutoCaptionConfig::default(), scope)
    }

    #[test]
    fn only_missing_drafts_uncaptioned_images_and_a_stopped_run_continues() {
        let dir = tempfile::tempdir().unwrap();
        let images = [("a.png", None), ("b.png", Some("ohwx, human words")), ("c.png", Some(" ")), ("d.png", None)];
        let context = project_with(dir.path(), &images);
        let before = fs::read(context.dataset.join("b.txt")).unwrap();
        let plan = |scope| plan_now(&context, scope).unwrap();
        let summary =
            run(&context, &mut Widths, &plan(Scope::OnlyMissing), &options(Scope::OnlyMissing), &mut |_| false)
                .unwrap();
        assert_eq!((summary.planned, summary.drafted, summary.stopped), (3, 2, true), "stopped after one batch");
        let summary =
            run(&context, &mut Widths, &plan(Scope::OnlyMissing), &options(Scope::OnlyMissing), &mut |_| true).unwrap();
        assert_eq!((summary.planned, summary.drafted, summary.stopped), (1, 1, false), "the rerun continues");
        let drafts = Drafts::read(&context.dataset).unwrap();
        let images: Vec<_> = drafts.iter().map(|d| d.image.to_str().unwrap().to_string()).collect();
        assert_eq!(images, ["a.png", "c.png", "d.png"]);
        assert_eq!(drafts.get(Path::new("a.png")).unwrap().text, "ohwx, a mug 8 wide");
        assert_eq!(fs::read(context.dataset.join("b.txt")).unwrap(), before, "human captions untouched");
        assert!(!context.dataset.join("a.txt").exists(), "a draft is not a caption");
        let all = run(&context, &mut Widths, &plan(Scope::All), &options(Scope::All), &mut |_| true).unwrap();
        assert_eq!(all.planned, 1, "--all adds the captioned image, not the drafts awaiting review");
    }
}
