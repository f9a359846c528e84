//! The overfit alarm: the validation loss rising several validations in a
//! row while the training loss keeps falling means the LoRA is learning the
//! training images rather than the subject, and every step from here makes it
//! worse. The alarm names the best checkpoint so far, the one to keep.

use super::smoothing::smooth;

/// Consecutive rises of the validation loss that raise the alarm. One or two
/// rises in a row happen by chance: the validation set is a handful of images
/// at a few fixed timesteps, so its loss jitters; three in a row (four points
/// strictly increasing) is a trend.
pub const RISES: usize = 3;

/// EMA weight for the training loss: per-step losses swing with the sampled
/// timestep far more than they trend, so only a heavily smoothed curve says
/// whether training is still falling (the headless progress line uses 0.9 too).
const TRAINING_SMOOTHING: f64 = 0.9;

#[derive(Debug, Clone, PartialEq)]
pub struct OverfitAlarm {
    /// The validation step after which the validation loss kept rising.
    pub rising_since: u64,
    /// The validation with the lowest loss so far.
    pub best_step: u64,
    pub best_loss: f64,
    /// The latest checkpoint at or before `best_step`, if any was saved.
    pub best_checkpoint: Option<u64>,
}

/// The alarm, if the last [`RISES`] validations each rose while the smoothed
/// training loss fell over the same span. `training` and `validation` are
/// (step, loss) in step order; `checkpoints` the steps with a saved checkpoint.
pub fn overfit_alarm(training: &[(u64, f64)], validation: &[(u64, f64)], checkpoints: &[u64]) -> Option<OverfitAlarm> {
    let tail = validation.get(validation.len().checked_sub(RISES + 1)?..)?;
    // `>` is false for NaN, so a broken loss never counts as a rise.
    if !tail.windows(2).all(|pair| pair[1].1 > pair[0].1) {
        return None;
    }
    let (rising_since, last) = (tail[0].0, tail[RISES].0);
    let losses: Vec<f64> = training.iter().map(|&(_, loss)| loss).collect();
    let smoothed = smooth(&losses, TRAINING_SMOOTHING);
    // The smoothed training loss as of `step`: its last point at or before it.
    let at = |step: u64| {
        let logged = training.partition_point(|&(s, _)| s <= step);
        logged.checked_sub(1).map(|index| smoothed[index])
    };
    // Both rising together is divergence (too high a learning rate), not
    // overfitting; a NaN training loss is not falling either.
    let training_falls = at(last)? < at(rising_since)?;
    if !training_falls {
        return None;
    }
    let &(best_step, best_loss) =
        validation.iter().filter(|(_, loss)| loss.is_finite()).min_by(|a, b| a.1.total_cmp(&b.1))?;
    let best_checkpoint = checkpoints.iter().copied().filter(|&step| step <= best_step).max();
    Some(OverfitAlarm { rising_since, best_step, best_loss, best_checkpoint })
}

impl OverfitAlarm {
    /// The warning as a sentence, for logs and the headless output.
    pub fn message(&self) -> String {
        format!(
            "validation loss has risen {RISES} validations in a row since step {} while the training loss falls: {}",
            self.rising_since,
            self.best()
        )
    }

    /// The warning in a few words: it shares the Train pane's one summary
    /// line with the training state, within 80 columns.
    pub fn short(&self) -> String {
        let (step, loss) = (self.best_step, self.best_loss);
        let best = match self.best_checkpoint {
            Some(checkpoint) if checkpoint == step => format!("best checkpoint step {step} (val {loss:.4})"),
            Some(checkpoint) => format!("best checkpoint step {checkpoint} (val {loss:.4} at {step})"),
            None => format!("best val {loss:.4} at step {step}, no checkpoint"),
        };
        format!("⚠ overfitting since step {}: {best}", self.rising_since)
    }

    fn best(&self) -> String {
        let (step, loss) = (self.best_step, self.best_loss);
        match self.best_checkpoint {
            Some(checkpoint) if checkpoint == step => {
                format!("the best checkpoint so far is step {step} (val {loss:.4})")
            }
            Some(checkpoint) => {
                format!("the best checkpoint so far is step {checkpoint} (best val {loss:.4} at step {step})")
            }
            None => format!("no checkpoint at or before the best validation (step {step}, val {loss:.4})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A training loss falling steadily over `steps` steps.
    fn falling(steps: u64) -> Vec<(u64, f64)> {
        (1..=steps).map(|step| (step, 1.0 / step as f64)).collect()
    }

    /// Validation every 100 steps: falling to step 400, then rising three times.
    fn overfitting() -> Vec<(u64, f64)> {
        vec![(100, 0.30), (200, 0.20), (300, 0.15), (400, 0.12), (500, 0.13), (600, 0.14), (700, 0.16)]
    }

    #[test]
    fn rising_validation_with_falling_training_names_the_best_checkpoint() {
        let alarm = overfit_alarm(&falling(700), &overfitting(), &[200, 400, 600]).expect("an alarm");
        assert_eq!(
            alarm,
            OverfitAlarm { rising_since: 400, best_step: 400, best_loss: 0.12, best_checkpoint: Some(400) }
        );
        assert_eq!(
            alarm.message(),
            "validation loss has risen 3 validations in a row since step 400 while the training loss falls: \
             the best checkpoint so far is step 400 (val 0.1200)"
        );
        // Without a checkpoint at the best step, the one before it.
        let earlier = overfit_alarm(&falling(700), &overfitting(), &[300, 500]).unwrap();
        assert_eq!(earlier.best_checkpoint, Some(300));
        assert_eq!(earlier.short(), "⚠ overfitting since step 400: best checkpoint step 300 (val 0.1200 at 400)");
    }

    #[test]
    fn rising_training_loss_is_divergence_not_overfitting() {
        let rising: Vec<(u64, f64)> = (1..=700).map(|step| (step, step as f64 / 700.0)).collect();
        assert_eq!(overfit_alarm(&rising, &overfitting(), &[400]), None);
    }

    #[test]
    fn two_rises_are_noise() {
        let validation = &overfitting()[..6];
        assert_eq!(overfit_alarm(&falling(600), validation, &[400]), None);
    }

    #[test]
    fn noisy_but_not_monotone_is_no_alarm() {
        let validation = [(100, 0.30), (200, 0.20), (300, 0.22), (400, 0.21), (500, 0.23), (600, 0.25)];
        assert_eq!(overfit_alarm(&falling(600), &validation, &[300]), None);
    }

    #[test]
    fn no_checkpoint_at_or_before_the_best_step() {
        let alarm = overfit_alarm(&falling(700), &overfitting(), &[500]).unwrap();
        assert_eq!(alarm.best_checkpoint, None);
        assert_eq!(overfit_alarm(&falling(700), &overfitting(), &[]).unwrap().best_checkpoint, None);
        assert!(alarm.message().ends_with("no checkpoint at or before the best validation (step 400, val 0.1200)"));
    }
}
