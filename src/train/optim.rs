//! The optimizer side of training: AdamW over the LoRA variables (its
//! moments kept in f32 and saved with checkpoints), global gradient-norm
//! clipping, and the learning-rate schedule.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{DType, Result, Tensor, Var};

use crate::project::{LrSchedule, TrainConfig};

/// Every variable's gradient in one flat f32 vector, in variable order,
/// with zeros where a variable got none. One vector makes clipping and the
/// optimizer a handful of whole-vector ops (and one device sync for the
/// norm) instead of a dozen ops and a sync per variable.
pub struct FlatGrads {
    pub values: Tensor,
    /// Indices of the variables that got no gradient: the optimizer leaves them alone.
    pub missing: Vec<usize>,
}

impl FlatGrads {
    /// Flattens `grads` (by variable index) for `vars`.
    pub fn new(vars: &[Var], grads: &HashMap<usize, Tensor>) -> Result<Self> {
        let mut parts = Vec::with_capacity(vars.len());
        let mut missing = Vec::new();
        for (index, var) in vars.iter().enumerate() {
            let part = match grads.get(&index) {
                Some(grad) => grad.flatten_all()?.to_dtype(DType::F32)?,
                None => {
                    missing.push(index);
                    Tensor::zeros(var.elem_count(), DType::F32, var.device())?
                }
            };
            parts.push(part);
        }
        Ok(Self { values: Tensor::cat(&parts, 0)?, missing })
    }

    pub fn scale(&mut self, factor: f64) -> Result<()> {
        self.values = (&self.values * factor)?;
        Ok(())
    }

    /// Scales the gradients so that their global L2 norm is at most
    /// `max_norm` (0: no clipping), all on the device: the norm is returned
    /// as a 0-d tensor, to be read once the step is queued.
    pub fn clip(&mut self, max_norm: f64) -> Result<Tensor> {
        let norm = self.values.sqr()?.sum_all()?.sqrt()?;
        if max_norm > 0.0 {
            let factor = ((&norm + 1e-6)?.recip()? * max_norm)?.clamp(0f32, 1f32)?;
            self.values = self.values.broadcast_mul(&factor)?;
        }
        Ok(norm)
    }
}

/// AdamW (decoupled weight decay) over all variables at once: the moments
/// are two flat f32 vectors laid out as [`FlatGrads`] is, so one update is
/// a dozen whole-vector ops and a copy back into each variable.
pub struct AdamW {
    vars: Vec<Var>,
    first: Tensor,
    second: Tensor,
    /// Optimizer steps taken, for bias correction.
    pub steps: u64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl AdamW {
    pub fn new(vars: Vec<Var>, weight_decay: f64) -> Result<Self> {
        let device = vars.first().map_or(candle_core::Device::Cpu, |v| v.device().clone());
        let length = vars.iter().map(|v| v.elem_count()).sum::<usize>();
        let zeros = Tensor::zeros(length, DType::F32, &device)?;
        Ok(Self {
            vars,
            first: zeros.clone(),
            second: zeros,
            steps: 0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
        })
    }

    /// Where each variable's values sit in the flat vectors.
    fn segments(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.vars.iter().scan(0, |offset, var| {
            let start = *offset;
            *offset += var.elem_count();
            Some((start, var.elem_count()))
        })
    }

    /// A flat 0/1 vector: 1 where the variable got a gradient.
    fn present_mask(&self, missing: &[usize]) -> Result<Tensor> {
        let parts = self
            .segments()
            .enumerate()
            .map(|(index, (_, length))| {
                let value = if missing.contains(&index) { 0u8 } else { 1u8 };
                Tensor::full(value, length, self.first.device())
            })
            .collect::<Result<Vec<_>>>()?;
        Tensor::cat(&parts, 0)
    }

    /// One update with learning rate `lr`. Variables without a gradient are
    /// skipped: their values and moments stay as they were.
    pub fn step(&mut self, grads: &FlatGrads, lr: f64) -> Result<()> {
        self.steps += 1;
        let t = self.steps as i32;
        let (correction1, correction2) = (1.0 - self.beta1.powi(t), 1.0 - self.beta2.powi(t));
        let grad = &grads.values;
        let first = ((&self.first * self.beta1)? + (grad * (1.0 - self.beta1))?)?;
        let second = ((&self.second * self.beta2)? + (grad.sqr()? * (1.0 - self.beta2))?)?;
        let m_hat = (&first / correction1)?;
        let v_hat = (&second / correction2)?;
        let update = (m_hat / (v_hat.sqrt()? + self.eps)?)?;
        let values =
            Tensor::cat(&self.vars.iter().map(|v| v.as_tensor().flatten_all()).collect::<Result<Vec<_>>>()?, 0)?;
        let updated = ((values * (1.0 - lr * self.weight_decay))? - (update * lr)?)?;
        (self.first, self.second) = if grads.missing.is_empty() {
            (first, second)
        } else {
            let present = self.present_mask(&grads.missing)?;
            (present.where_cond(&first, &self.first)?, present.where_cond(&second, &self.second)?)
        };
        for (index, (var, (start, length))) in self.vars.iter().zip(self.segments()).enumerate() {
            if !grads.missing.contains(&index) {
                var.set(&updated.narrow(0, start, length)?.reshape(var.shape())?)?;
            }
        }
        Ok(())
    }

    /// The moments, one pair per variable, named for a checkpoint file.
    pub fn state(&self) -> Result<Vec<(String, Tensor)>> {
        let mut state = Vec::with_capacity(2 * self.vars.len());
        for (name, flat) in [("m", &self.first), ("v", &self.second)] {
            for (i, (var, (start, length))) in self.vars.iter().zip(self.segments()).enumerate() {
                state.push((format!("adam.{name}.{i}"), flat.narrow(0, start, length)?.reshape(var.shape())?));
            }
        }
        Ok(state)
    }

    /// Restores moments saved by [`AdamW::state`] after `steps` updates.
    pub fn restore(&mut self, tensors: &HashMap<String, Tensor>, steps: u64) -> Result<()> {
        let device = self.first.device().clone();
        let flat = |name: &str| -> Result<Tensor> {
            let parts = (0..self.vars.len())
                .map(|i| {
                    let key = format!("adam.{name}.{i}");
                    let saved = tensors
                        .get(&key)
                        .ok_or_else(|| candle_core::Error::msg(format!("checkpoint lacks `{key}`")))?;
                    saved.flatten_all()?.to_dtype(DType::F32)?.to_device(&device)
                })
                .collect::<Result<Vec<_>>>()?;
            Tensor::cat(&parts, 0)
        };
        let (first, second) = (flat("m")?, flat("v")?);
        if first.elem_count() != self.first.elem_count() {
            candle_core::bail!(
                "checkpoint moments hold {} values, the LoRA {}",
                first.elem_count(),
                self.first.elem_count()
            );
        }
        (self.first, self.second, self.steps) = (first, second, steps);
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
            adam.step(&FlatGrads::new(std::slice::from_ref(&x), &grads).unwrap(), 0.1).unwrap();
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
        let vars = [Var::new(&[0f32, 0.0], &Device::Cpu).unwrap(), Var::new(&[0f32], &Device::Cpu).unwrap()];
        let grads = HashMap::from([
            (0, Tensor::new(&[3f32, 0.0], &Device::Cpu).unwrap()),
            (1, Tensor::new(&[4f32], &Device::Cpu).unwrap()),
        ]);
        let mut flat = FlatGrads::new(&vars, &grads).unwrap();
        let norm = |t: Tensor| t.to_scalar::<f32>().unwrap();
        assert!((norm(flat.clip(1.0).unwrap()) - 5.0).abs() < 1e-6);
        assert!((norm(flat.clip(0.0).unwrap()) - 1.0).abs() < 1e-4);
        let before = flat.values.to_vec1::<f32>().unwrap();
        flat.clip(2.0).unwrap();
        assert_eq!(flat.values.to_vec1::<f32>().unwrap(), before, "a norm under the limit is left exactly as it was");
    }

    /// The one-vector update equals AdamW written per variable, and a
    /// variable without a gradient keeps its value and moments.
    #[test]
    fn the_flat_update_equals_the_per_variable_formula() {
        let device = Device::Cpu;
        let shapes: [&[usize]; 3] = [&[2, 3], &[4], &[3, 1]];
        let vars: Vec<Var> = shapes.iter().map(|s| Var::randn(0f32, 1.0, *s, &device).unwrap()).collect();
        let mut expected: Vec<(Tensor, Tensor, Tensor)> = vars
            .iter()
            .map(|v| (v.as_tensor().copy().unwrap(), v.zeros_like().unwrap(), v.zeros_like().unwrap()))
            .collect();
        let mut adam = AdamW::new(vars.clone(), 0.01).unwrap();
        for step in 1..=3 {
            let grads: HashMap<usize, Tensor> = (0..vars.len())
                .filter(|&i| !(step == 2 && i == 1))
                .map(|i| (i, Tensor::randn(0f32, 1.0, shapes[i], &device).unwrap()))
                .collect();
            adam.step(&FlatGrads::new(&vars, &grads).unwrap(), 1e-2).unwrap();
            let (c1, c2) = (1.0 - 0.9f64.powi(step), 1.0 - 0.999f64.powi(step));
            for (i, (value, m, v)) in expected.iter_mut().enumerate() {
                let Some(g) = grads.get(&i) else { continue };
                *m = ((&*m * 0.9).unwrap() + (g * 0.1).unwrap()).unwrap();
                *v = ((&*v * 0.999).unwrap() + (g.sqr().unwrap() * 0.001).unwrap()).unwrap();
                let update = ((&*m / c1).unwrap() / ((&*v / c2).unwrap().sqrt().unwrap() + 1e-8).unwrap()).unwrap();
                *value = ((&*value * (1.0 - 1e-2 * 0.01)).unwrap() - (update * 1e-2).unwrap()).unwrap();
            }
        }
        let state: HashMap<String, Tensor> = adam.state().unwrap().into_iter().collect();
        for (i, (value, m, v)) in expected.iter().enumerate() {
            let diff = |a: &Tensor, b: &Tensor| {
                (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
            };
            assert_eq!(diff(vars[i].as_tensor(), value), 0.0, "variable {i}");
            assert_eq!(diff(&state[&format!("adam.m.{i}")], m), 0.0, "first moment {i}");
            assert_eq!(diff(&state[&format!("adam.v.{i}")], v), 0.0, "second moment {i}");
        }
        let mut restored = AdamW::new(vars.clone(), 0.01).unwrap();
        restored.restore(&state, 3).unwrap();
        assert_eq!(restored.state().unwrap().len(), 6);
    }
}
