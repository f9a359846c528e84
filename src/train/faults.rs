//! Drills for the tests, switched on by environment variables on `easel
//! train`: a loss made NaN at a chosen step, a run held after a chosen
//! step so that a test can kill it there. Whatever they cause says that it
//! was injected, so a drill is never mistaken for a real failure.

/// The drills asked for; none by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    /// `EASEL_FAULT_NAN_STEP`: the loss of this step becomes NaN.
    pub nan_at: Option<u64>,
    /// `EASEL_FAULT_HOLD_AFTER_STEP`: once this step is logged, wait to be killed.
    pub hold_after: Option<u64>,
}

pub const NAN_STEP: &str = "EASEL_FAULT_NAN_STEP";
pub const HOLD_AFTER_STEP: &str = "EASEL_FAULT_HOLD_AFTER_STEP";

impl Faults {
    pub fn from_env() -> Self {
        let step = |name: &str| std::env::var(name).ok().and_then(|v| v.trim().parse().ok());
        Self { nan_at: step(NAN_STEP), hold_after: step(HOLD_AFTER_STEP) }
    }

    /// A line saying which drills are on, for the start of a run.
    pub fn announcement(&self) -> Option<String> {
        let mut drills = Vec::new();
        if let Some(step) = self.nan_at {
            drills.push(format!("{NAN_STEP}={step}: the loss of step {step} will be made NaN"));
        }
        if let Some(step) = self.hold_after {
            drills.push(format!("{HOLD_AFTER_STEP}={step}: the run will stop moving after step {step}"));
        }
        (!drills.is_empty()).then(|| format!("injected faults (a test drill): {}", drills.join("; ")))
    }

    /// Blocks forever once `step` is the one to hold after.
    pub fn hold_if_asked(&self, step: u64) {
        if self.hold_after == Some(step) {
            loop {
                std::thread::park();
            }
        }
    }
}
