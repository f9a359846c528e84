//! Loss smoothing as TensorBoard draws it: an exponential moving average
//! with bias correction, so the first points are not dragged toward zero.

#[derive(Debug, Clone, Copy)]
pub struct Ema {
    /// Weight of the past, 0 (no smoothing) to below 1.
    pub weight: f64,
    value: f64,
    count: i32,
}

impl Ema {
    pub fn new(weight: f64) -> Self {
        Self { weight: weight.clamp(0.0, 0.999), value: 0.0, count: 0 }
    }

    /// Adds a point and returns the smoothed value so far.
    pub fn push(&mut self, x: f64) -> f64 {
        if !x.is_finite() {
            return self.get().unwrap_or(x);
        }
        self.value = self.value * self.weight + (1.0 - self.weight) * x;
        self.count += 1;
        self.get().unwrap_or(x)
    }

    pub fn get(&self) -> Option<f64> {
        (self.count > 0).then(|| {
            let debias = 1.0 - self.weight.powi(self.count);
            if debias > 0.0 { self.value / debias } else { self.value }
        })
    }
}

/// The smoothed series of `values`.
pub fn smooth(values: &[f64], weight: f64) -> Vec<f64> {
    let mut ema = Ema::new(weight);
    values.iter().map(|&x| ema.push(x)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bias_correction_starts_at_the_first_value() {
        let smoothed = smooth(&[4.0, 4.0, 4.0], 0.9);
        assert!(smoothed.iter().all(|v| (v - 4.0).abs() < 1e-12), "{smoothed:?}");
        let stepped = smooth(&[0.0, 10.0], 0.5);
        assert!((stepped[1] - 20.0 / 3.0).abs() < 1e-12, "{stepped:?}");
        assert_eq!(smooth(&[1.0, 2.0], 0.0), vec![1.0, 2.0]);
    }
}
