//! What a LoRA file says about itself: kohya's `ss_*` training record and
//! the SAI model-spec `modelspec.*` fields, and keeping the operator's local
//! paths out of files meant to be shared.

use std::collections::BTreeMap;

use super::super::Family;
use super::super::lora::LoraNetwork;
use super::super::schedule::PredictionType;
use super::LoraFormat;

/// What kohya's `ss_*` metadata records about a training run.
#[derive(Debug, Clone, Default)]
pub struct TrainingInfo {
    pub output_name: String,
    /// The base model as the project names it; only its file or folder name is written.
    pub base_model_name: String,
    pub resolution: (usize, usize),
    pub steps: u64,
    pub num_train_images: usize,
    /// Folder name → tag → count, from the captions.
    pub tag_frequency: BTreeMap<String, BTreeMap<String, usize>>,
    pub seed: u64,
    pub learning_rate: f64,
    /// Unix times, seconds.
    pub started_at: f64,
    pub finished_at: f64,
    /// The project's trigger word, written as `modelspec.trigger_phrase`.
    pub trigger: String,
}

/// kohya's version string, the model-spec architecture and implementation
/// of a family's LoRA (kohya's sai_model_spec: diffusers-style modules for
/// SD1/SD2, Stability's generative-models for SDXL).
fn version_strings(family: Family, prediction: PredictionType) -> (&'static str, &'static str, &'static str) {
    const DIFFUSERS: &str = "diffusers";
    const STABILITY: &str = "https://github.com/Stability-AI/generative-models";
    let v = prediction == PredictionType::VPrediction;
    match (family, v) {
        (Family::Sd1, false) => ("sd_v1", "stable-diffusion-v1/lora", DIFFUSERS),
        (Family::Sd1, true) => ("sd_v1_v", "stable-diffusion-v1/lora", DIFFUSERS),
        (Family::Sd2, false) => ("sd_v2", "stable-diffusion-v2-512/lora", DIFFUSERS),
        (Family::Sd2, true) => ("sd_v2_v", "stable-diffusion-v2-768-v/lora", DIFFUSERS),
        (Family::Sdxl, _) => ("sdxl_base_v1-0", "stable-diffusion-xl-v1-base/lora", STABILITY),
    }
}

/// The last component of a path (`/home/me/models/sd15.safetensors` →
/// `sd15.safetensors`); anything else as it is.
fn file_name(text: &str) -> String {
    let trimmed = text.trim_end_matches(['/', '\\']);
    match trimmed.rsplit(['/', '\\']).next() {
        Some(name) if !name.is_empty() && trimmed.contains(['/', '\\']) => name.to_string(),
        _ => text.to_string(),
    }
}

/// The metadata with every local path cut to its file or folder name: values
/// that are paths, and the folder keys of the JSON maps kohya keys by folder
/// (`ss_tag_frequency`, `ss_dataset_dirs`), as kohya itself writes them.
pub fn without_local_paths(metadata: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let looks_like_path = |v: &str| {
        !v.contains('\n')
            && (v.starts_with('/') || v.starts_with("~/") || v.starts_with("./") || v.get(1..3) == Some(":\\"))
    };
    metadata
        .iter()
        .map(|(key, value)| {
            let value = if looks_like_path(value) {
                file_name(value)
            } else if let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(value)
                && map.keys().any(|k| looks_like_path(k))
            {
                let renamed: serde_json::Map<_, _> = map.into_iter().map(|(k, v)| (file_name(&k), v)).collect();
                serde_json::to_string(&renamed).unwrap_or_else(|_| value.clone())
            } else {
                value.clone()
            };
            (key.clone(), value)
        })
        .collect()
}

/// What a LoRA for `family` is, in model-spec and kohya terms: the fields
/// every Easel-written LoRA carries, trained or made by a tool.
pub fn lora_identity(family: Family, prediction: PredictionType) -> BTreeMap<String, String> {
    let (version, architecture, implementation) = version_strings(family, prediction);
    let python_bool = |b: bool| if b { "True" } else { "False" }.to_string();
    BTreeMap::from([
        ("modelspec.sai_model_spec".into(), "1.0.1".into()),
        ("modelspec.architecture".into(), architecture.into()),
        ("modelspec.implementation".into(), implementation.into()),
        (
            "modelspec.prediction_type".into(),
            if prediction == PredictionType::VPrediction { "v" } else { "epsilon" }.into(),
        ),
        ("ss_network_module".into(), "networks.lora".into()),
        ("ss_base_model_version".into(), version.into()),
        ("ss_v2".into(), python_bool(family == Family::Sd2)),
        ("ss_v_parameterization".into(), python_bool(prediction == PredictionType::VPrediction)),
    ])
}

/// The header metadata kohya's trainer writes, as far as Easel knows it,
/// and the model-spec fields.
pub fn kohya_metadata(
    network: &LoraNetwork,
    family: Family,
    prediction: PredictionType,
    info: &TrainingInfo,
) -> BTreeMap<String, String> {
    let resolution = format!("{}x{}", info.resolution.0, info.resolution.1);
    let mut m = BTreeMap::new();
    m.insert("ss_network_dim".into(), network.rank.to_string());
    m.insert("ss_network_alpha".into(), format!("{:?}", network.alpha));
    m.insert("ss_sd_model_name".into(), file_name(&info.base_model_name));
    m.insert("ss_resolution".into(), format!("({}, {})", info.resolution.0, info.resolution.1));
    m.insert("ss_steps".into(), info.steps.to_string());
    m.insert("ss_max_train_steps".into(), info.steps.to_string());
    m.insert("ss_num_train_images".into(), info.num_train_images.to_string());
    let tag_frequency: BTreeMap<String, &BTreeMap<String, usize>> =
        info.tag_frequency.iter().map(|(folder, tags)| (file_name(folder), tags)).collect();
    m.insert("ss_tag_frequency".into(), serde_json::to_string(&tag_frequency).unwrap_or_else(|_| "{}".into()));
    m.insert("ss_output_name".into(), info.output_name.clone());
    m.insert("ss_seed".into(), info.seed.to_string());
    m.insert("ss_learning_rate".into(), format!("{:?}", info.learning_rate));
    m.insert("ss_training_started_at".into(), format!("{:.6}", info.started_at));
    m.insert("ss_training_finished_at".into(), format!("{:.6}", info.finished_at));
    m.insert("ss_training_comment".into(), "trained with Easel".into());
    m.extend(lora_identity(family, prediction));
    m.insert("modelspec.title".into(), info.output_name.clone());
    m.insert("modelspec.resolution".into(), resolution);
    m.insert("modelspec.date".into(), crate::utc::UtcTime::from_unix(info.finished_at as i64).iso());
    if !info.trigger.is_empty() {
        m.insert("modelspec.trigger_phrase".into(), info.trigger.clone());
    }
    m
}

/// What says what a file is and how to load it, kept when training metadata
/// is stripped: kohya's own `--no_metadata` set, without hashes.
const IDENTITY: [&str; 11] = [
    "modelspec.sai_model_spec",
    "modelspec.architecture",
    "modelspec.implementation",
    "modelspec.title",
    "modelspec.resolution",
    "modelspec.prediction_type",
    "ss_v2",
    "ss_base_model_version",
    "ss_network_module",
    "ss_network_dim",
    "ss_network_alpha",
];

/// How a LoRA is written for sharing.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportOptions {
    pub format: LoraFormat,
    /// The name tools show (`modelspec.title`, `ss_output_name`).
    pub title: Option<String>,
    /// Drop the training record (tags, dataset, seeds, times) and every
    /// other field but what says what the file is (`IDENTITY`).
    pub strip_metadata: bool,
}

impl ExportOptions {
    /// The metadata an exported copy carries.
    pub fn header(&self, metadata: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        let mut header = without_local_paths(metadata);
        if self.strip_metadata {
            header.retain(|key, _| IDENTITY.contains(&key.as_str()));
        }
        if let Some(title) = &self.title {
            header.insert("modelspec.title".into(), title.clone());
            if !self.strip_metadata {
                header.insert("ss_output_name".into(), title.clone());
            }
        }
        header
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths_become_file_names() {
        let metadata = BTreeMap::from([
            ("ss_sd_model_name".to_string(), "/home/me/models/sd15.safetensors".to_string()),
            ("ss_vae_name".to_string(), "C:\\models\\vae.safetensors".to_string()),
            ("ss_tag_frequency".to_string(), r#"{"/home/me/proj/dataset": {"mug": 3}}"#.to_string()),
            ("ss_seed".to_string(), "42".to_string()),
            ("ss_output_name".to_string(), "my mug/v2".to_string()),
        ]);
        let clean = without_local_paths(&metadata);
        assert_eq!(clean["ss_sd_model_name"], "sd15.safetensors");
        assert_eq!(clean["ss_vae_name"], "vae.safetensors");
        assert_eq!(clean["ss_tag_frequency"], r#"{"dataset":{"mug":3}}"#);
        assert_eq!(clean["ss_seed"], "42");
        assert_eq!(clean["ss_output_name"], "my mug/v2", "a relative name with a slash is not a local path");
    }

    #[test]
    fn stripping_keeps_the_model_spec_identity_and_the_new_title() {
        let metadata = BTreeMap::from([
            ("ss_tag_frequency".to_string(), "{}".to_string()),
            ("modelspec.architecture".to_string(), "stable-diffusion-v1/lora".to_string()),
            ("modelspec.title".to_string(), "old".to_string()),
        ]);
        let options = ExportOptions { format: LoraFormat::Kohya, title: Some("new".into()), strip_metadata: true };
        let header = options.header(&metadata);
        assert_eq!(header.keys().collect::<Vec<_>>(), ["modelspec.architecture", "modelspec.title"]);
        assert_eq!(header["modelspec.title"], "new");
    }
}
