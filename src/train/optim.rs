//! The optimizer side of training: AdamW over the LoRA variables (its
//! moments kept in f32 and saved with checkpoints), global gradient-norm
//! clipping, and the learning-rate schedule.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{DType, Result, Tensor, Var};

use crate::project::{LrSchedule, TrainConfig};

/// AdamW (decoupled weight decay), one pair of moments per variable.
pub struct AdamW {
    vars: Vec<Var>,
    first: Vec<Tensor>,
    second: Vec<Tensor>,
    /// Optimizer steps taken, for bias correction.
    pub steps: u64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl AdamW {
    pub fn new(vars: Vec<Var>, weight_decay: f64) -> Result<Self> {
        let zeros = |v: &Var| v.as_tensor().zeros_like()?.to_dtype(DType::F32);
        let first = vars.iter().map(zeros).collect::<Result<Vec<_>>>()?;
        let second = vars.iter().map(zeros).collect::<Result<Vec<_>>>()?;
        Ok(Self { vars, first, second, steps: 0, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay })
    }

    /// One update with learning rate `lr` from `grads` (missing ones count as zero).
    pub fn step(&mut self, grads: &HashMap<usize, Tensor>, lr: f64) -> Result<()> {
        self.steps += 1;
        let t = self.steps as i32;
        let (correction1, correction2) = (1.0 - self.beta1.powi(t), 1.0 - self.beta2.powi(t));
        for (index, var) in self.vars.iter().enumerate() {
            let Some(grad) = grads.get(&index) else { continue };
            let grad = grad.to_dtype(DType::F32)?;
            self.first[index] = ((&self.first[index] * self.beta1)? + (&grad * (1.0 - self.beta1))?)?;
            self.second[index] = ((&self.second[index] * self.beta2)? + (grad.sqr()? * (1.0 - self.beta2))?)?;
            let m_hat = (&self.first[index] / correction1)?;
            let v_hat = (&self.second[index] / correction2)?;
            let update = (m_hat / (v_hat.sqrt()? + self.eps)?)?;
            let decayed = (var.as_tensor() * (1.0 - lr * self.weight_decay))?;
            var.set(&(decayed - (update * lr)?)?)?;
        }
        Ok(())
    }

    /// The moments, named for a checkpoint file.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let first = self.first.iter().enumerate().map(|(i, m)| (format!("adam.m.{i}"), m.clone()));
        let second = self.second.iter().enumerate().map(|(i, v)| (format!("adam.v.{i}"), v.clone()));
        first.chain(second).collect()
    }

    /// Restores moments saved by [`AdamW::state`] after `steps` updates.
    pub fn restore(&mut self, tensors: &HashMap<String, Tensor>, steps: u64) -> Result<()> {
        for i in 0..self.vars.len() {
            let get = |name: String| {
                tensors.get(&name).cloned().ok_or_else(|| candle_core::Error::msg(format!("checkpoint lacks `{name}`")))
            };
            let device = self.vars[i].device();
            self.first[i] = get(format!("adam.m.{i}"))?.to_device(device)?;
            self.second[i] = get(format!("adam.v.{i}"))?.to_device(device)?;
        }
        self.steps = steps;
        Ok(())
    }
}

/// The gradients of `vars` from a backward pass, by variable index.
pub fn collect_grads(vars: &[Var], grads: &GradStore) -> HashMap<usize, Tensor> {
    vars.iter().enumerate().filter_map(|(i, v)| Some((i, grads.get(v.as_tensor())?.clone()))).collect()
}

/// Adds `more` into `sum` (gradient accumulation).
pub fn accumulate(sum: &mut HashMap<usize, Tensor>, more: HashMap<usize, Tensor>) -> Result<()> {
    for (index, grad) in more {
        let total = match sum.remove(&index) {
            Some(existing) => (existing + grad)?,
            None => grad,
        };
        sum.insert(index, total);
    }
    Ok(())
}

/// Scales every gradient by `factor`.
pub fn scale(grads: &mut HashMap<usize, Tensor>, factor: f64) -> Result<()> {
    for grad in grads.values_mut() {
        *grad = (&*grad * factor)?;
    }
    Ok(())
}

/// The global L2 norm of the gradients, and the gradients scaled so that the
/// norm is at most `max_norm` (0: no clipping).
pub fn clip_grad_norm(grads: &mut HashMap<usize, Tensor>, max_norm: f64) -> Result<f64> {
    let mut total = 0f64;
    for grad in grads.values() {
        total += grad.to_dtype(DType::F32)?.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
    }
    let norm = total.sqrt();
    if max_norm > 0.0 && norm > max_norm {
        scale(grads, max_norm / (norm + 1e-6))?;
    }
    Ok(norm)
}

/// The learning rate at `step` (0-based): linear warm-up, then constant, or
/// a cosine or linear decay to zero at the last step.
pub fn learning_rate(config: &TrainConfig, step: u64) -> f64 {
    let (base, warmup, total) = (config.learning_rate, u64::from(config.warmup_steps), u64::from(config.steps));
    if step < warmup {
        return base * (step + 1) as f64 / warmup as f64;
    }
    let progress = if total > warmup { (step - warmup) as f64 / (total - warmup) as f64 } else { 1.0 };
    match config.schedule {
        LrSchedule::Constant => base,
        LrSchedule::Cosine => base * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
        LrSchedule::Linear => base * (1.0 - progress),
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    #[test]
    fn schedules_warm_up_then_decay() {
        let config = TrainConfig { learning_rate: 1e-3, warmup_steps: 10, steps: 110, ..TrainConfig::default() };
        assert!((learning_rate(&config, 0) - 1e-4).abs() < 1e-12);
        assert!((learning_rate(&config, 9) - 1e-3).abs() < 1e-12);
        assert!((learning_rate(&config, 10) - 1e-3).abs() < 1e-12, "cosine starts at the peak");
        assert!((learning_rate(&config, 60) - 5e-4).abs() < 1e-9, "half way down");
        assert!(learning_rate(&config, 109) < 1e-6);
        let linear = TrainConfig { schedule: LrSchedule::Linear, ..config.clone() };
        assert!((learning_rate(&linear, 60) - 5e-4).abs() < 1e-12);
        let constant = TrainConfig { schedule: LrSchedule::Constant, ..config };
        assert_eq!(learning_rate(&constant, 100), 1e-3);
    }

    /// Minimises (x − 3)² and checks AdamW's first step against the formula.
    #[test]
    fn adamw_descends_and_its_first_step_is_lr_sized() {
        let x = Var::new(&[0f32], &Device::Cpu).unwrap();
        let mut adam = AdamW::new(vec![x.clone()], 0.0).unwrap();
        for step in 0..300 {
            let loss = (x.as_tensor() - 3.0).unwrap().sqr().unwrap().sum_all().unwrap();
            let grads = collect_grads(std::slice::from_ref(&x), &loss.backward().unwrap());
            adam.step(&grads, 0.1).unwrap();
            if step == 0 {
                let value = x.as_tensor().to_vec1::<f32>().unwrap()[0];
                assert!((value - 0.1).abs() < 1e-4, "first Adam step moves by lr: {value}");
            }
        }
        let value = x.as_tensor().to_vec1::<f32>().unwrap()[0];
        assert!((value - 3.0).abs() < 0.05, "{value}");
    }

    #[test]
    fn clipping_caps_the_global_norm() {
        let mut grads = HashMap::from([
            (0, Tensor::new(&[3f32, 0.0], &Device::Cpu).unwrap()),
            (1, Tensor::new(&[4f32], &Device::Cpu).unwrap()),
        ]);
        assert!((clip_grad_norm(&mut grads, 1.0).unwrap() - 5.0).abs() < 1e-6);
        assert!((clip_grad_norm(&mut grads, 0.0).unwrap() - 1.0).abs() < 1e-4);
    }
}
