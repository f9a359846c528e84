//! `easel lora info`: what a LoRA file holds and what is wrong with it,
//! from the file alone.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use candle_core::DType;
use serde::Serialize;

use crate::model::lora_file::{LoraFile, LoraModule};

/// The modules of one block (a UNet level, a text encoder).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BlockSummary {
    pub block: String,
    pub modules: usize,
    /// Distinct ranks, ascending.
    pub ranks: Vec<usize>,
    /// Distinct alphas, ascending.
    pub alphas: Vec<f64>,
}

/// What kohya's training metadata says, where present.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Training {
    pub steps: Option<String>,
    pub images: Option<String>,
    pub resolution: Option<String>,
    pub learning_rate: Option<String>,
    pub seed: Option<String>,
    pub base_model: Option<String>,
    pub title: Option<String>,
    /// Tags in at least 80 % of the captions, most frequent first: the likely trigger words.
    pub likely_triggers: Vec<String>,
    /// The most frequent tags with their counts.
    pub top_tags: Vec<(String, usize)>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LoraInfo {
    pub file: String,
    pub bytes: u64,
    pub format: String,
    pub family: String,
    pub family_from: String,
    /// The base version the metadata names (`sd_v1`, `stable-diffusion-v2-768-v/lora`, …).
    pub version: Option<String>,
    pub dtype: String,
    pub modules: usize,
    /// Modules per component (`unet`, `text_encoder`, `text_encoder_2`).
    pub components: BTreeMap<String, usize>,
    /// (rank, alpha) → modules.
    pub rank_alpha: Vec<(usize, f64, usize)>,
    pub blocks: Vec<BlockSummary>,
    pub training: Training,
    pub problems: Vec<String>,
    pub metadata_keys: usize,
}

/// The block a module belongs to: `unet.down_blocks.1`, `unet.mid_block`, `text_encoder`.
fn block_of(path: &str) -> String {
    let parts: Vec<&str> = path.split('.').collect();
    match parts.as_slice() {
        ["unet", level @ ("down_blocks" | "up_blocks"), index, ..] => format!("unet.{level}.{index}"),
        ["unet", level, ..] => format!("unet.{level}"),
        [component, ..] => component.to_string(),
        [] => String::new(),
    }
}

/// Whether a module holds NaN or infinite values, and whether its up matrix
/// is all zeros (it changes nothing), each tensor read once.
fn health(module: &LoraModule) -> Result<(bool, bool)> {
    let values =
        |t: &candle_core::Tensor| -> Result<Vec<f32>> { Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?) };
    let (down, up) = (values(&module.down)?, values(&module.up)?);
    let non_finite = down.iter().chain(&up).any(|v| !v.is_finite());
    Ok((non_finite, up.iter().all(|v| *v == 0.0)))
}

fn training(metadata: &BTreeMap<String, String>) -> Training {
    let get = |key: &str| metadata.get(key).filter(|v| !v.is_empty() && *v != "None").cloned();
    let mut tags: BTreeMap<String, usize> = BTreeMap::new();
    if let Some(Ok(serde_json::Value::Object(folders))) =
        metadata.get("ss_tag_frequency").map(|text| serde_json::from_str::<serde_json::Value>(text))
    {
        for counts in folders.values().filter_map(|v| v.as_object()) {
            for (tag, count) in counts {
                *tags.entry(tag.trim().to_string()).or_default() += count.as_u64().unwrap_or(0) as usize;
            }
        }
    }
    let mut ranked: Vec<(String, usize)> = tags.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let images = get("ss_num_train_images").and_then(|n| n.parse::<usize>().ok()).filter(|n| *n > 0);
    let captions = images.or(ranked.first().map(|(_, n)| *n)).unwrap_or(0);
    let likely_triggers =
        ranked.iter().filter(|(_, n)| captions > 0 && *n * 5 >= captions * 4).take(3).map(|(t, _)| t.clone()).collect();
    Training {
        steps: get("ss_steps").or_else(|| get("ss_max_train_steps")),
        images: get("ss_num_train_images"),
        // kohya writes `(512, 512)`, model-spec `512x512`.
        resolution: get("modelspec.resolution")
            .or_else(|| get("ss_resolution").map(|r| r.trim_matches(['(', ')']).replace(", ", "x"))),
        learning_rate: get("ss_learning_rate"),
        seed: get("ss_seed"),
        base_model: get("ss_sd_model_name"),
        title: get("modelspec.title").or_else(|| get("ss_output_name")),
        likely_triggers,
        top_tags: ranked.into_iter().take(8).collect(),
    }
}

/// Reads `path` and describes it.
pub fn inspect(path: &Path) -> Result<LoraInfo> {
    let file = LoraFile::open(path)?;
    let mut components: BTreeMap<String, usize> = BTreeMap::new();
    let mut rank_alpha: BTreeMap<(usize, u64), usize> = BTreeMap::new();
    let mut blocks: Vec<BlockSummary> = Vec::new();
    let mut dtypes: Vec<String> = Vec::new();
    let (mut broken, mut zero) = (Vec::new(), 0);
    for module in &file.modules {
        *components.entry(module.path.split('.').next().unwrap_or("").to_string()).or_default() += 1;
        *rank_alpha.entry((module.rank(), module.alpha.to_bits())).or_default() += 1;
        let block = block_of(&module.path);
        let summary = match blocks.iter_mut().find(|b| b.block == block) {
            Some(summary) => summary,
            None => {
                blocks.push(BlockSummary { block, modules: 0, ranks: vec![], alphas: vec![] });
                blocks.last_mut().expect("just pushed")
            }
        };
        summary.modules += 1;
        if !summary.ranks.contains(&module.rank()) {
            summary.ranks.push(module.rank());
            summary.ranks.sort();
        }
        if !summary.alphas.contains(&module.alpha) {
            summary.alphas.push(module.alpha);
            summary.alphas.sort_by(f64::total_cmp);
        }
        let dtype = format!("{:?}", module.down.dtype()).to_lowercase();
        if !dtypes.contains(&dtype) {
            dtypes.push(dtype);
        }
        let (non_finite, all_zero) = health(module)?;
        if non_finite {
            broken.push(module.name.clone());
        }
        zero += usize::from(all_zero);
    }
    let mut problems = Vec::new();
    if !broken.is_empty() {
        let (modules, hold) =
            (crate::words::counted(broken.len(), "module"), crate::words::agreeing(broken.len(), "holds", "hold"));
        problems.push(format!("{modules} {hold} NaN or infinite values (first: {})", broken[0]));
    }
    if zero > 0 {
        let (modules, have) = (crate::words::counted(zero, "module"), crate::words::agreeing(zero, "has", "have"));
        problems.push(format!("{modules} {have} an all-zero up matrix: they change nothing (never trained?)"));
    }
    let ranks: Vec<usize> = {
        let mut ranks: Vec<usize> = file.modules.iter().map(LoraModule::rank).collect();
        ranks.sort();
        ranks.dedup();
        ranks
    };
    if ranks.len() > 1 {
        problems.push(format!(
            "mixed ranks ({}): fine for merged or resized files, but some tools assume one rank",
            ranks.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")
        ));
    }
    if !file.unmatched.is_empty() {
        problems.push(format!(
            "{} Easel does not read (not a linear or 1×1 layer of SD's UNet or text encoders; first: {})",
            crate::words::counted(file.unmatched.len(), "module"),
            file.unmatched[0]
        ));
    }
    Ok(LoraInfo {
        file: path.display().to_string(),
        bytes: std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
        format: file.format.label().to_string(),
        family: file.family.family.label().to_string(),
        family_from: file.family.evidence.to_string(),
        version: ["ss_base_model_version", "modelspec.architecture"]
            .iter()
            .find_map(|key| file.metadata.get(*key).filter(|v| !v.is_empty()).cloned()),
        dtype: dtypes.join(", "),
        modules: file.modules.len(),
        components,
        rank_alpha: rank_alpha.into_iter().map(|((r, a), n)| (r, f64::from_bits(a), n)).collect(),
        blocks,
        training: training(&file.metadata),
        problems,
        metadata_keys: file.metadata.len(),
    })
}

fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b => format!("{:.1} KiB", b as f64 / 1024.0),
    }
}

fn list<T: ToString>(values: &[T]) -> String {
    values.iter().map(T::to_string).collect::<Vec<_>>().join("/")
}

/// The report as a person reads it.
pub fn text(info: &LoraInfo) -> String {
    let mut out = String::new();
    let mut line = |label: &str, value: String| out.push_str(&format!("{label:<11} {value}\n"));
    line("file", format!("{} ({}, {})", info.file, size(info.bytes), info.dtype));
    line("format", info.format.clone());
    let version = info.version.as_ref().map(|v| format!(", {v}")).unwrap_or_default();
    line("family", format!("{} (from {}{version})", info.family, info.family_from));
    let components: Vec<String> = info.components.iter().map(|(c, n)| format!("{c} {n}")).collect();
    line("modules", format!("{}: {}", info.modules, components.join(", ")));
    let rank_alpha: Vec<String> = info
        .rank_alpha
        .iter()
        .map(|(r, a, n)| format!("rank {r} alpha {a} (scale {:.3}) × {n}", a / *r as f64))
        .collect();
    line("rank", rank_alpha.join("; "));
    if info.rank_alpha.len() > 1 || info.blocks.len() > 1 {
        for block in &info.blocks {
            line(
                "",
                format!(
                    "{:<22} {:>3} modules  rank {:<7} alpha {}",
                    block.block,
                    block.modules,
                    list(&block.ranks),
                    list(&block.alphas)
                ),
            );
        }
    }
    let t = &info.training;
    let facts: Vec<String> = [
        (t.steps.as_ref(), "steps"),
        (t.images.as_ref(), "images"),
        (t.resolution.as_ref(), "px"),
        (t.learning_rate.as_ref(), "learning rate"),
        (t.seed.as_ref(), "seed"),
    ]
    .into_iter()
    .filter_map(|(value, label)| value.map(|v| if label == "px" { format!("{v} px") } else { format!("{label} {v}") }))
    .collect();
    if !facts.is_empty() || t.title.is_some() {
        let title = t.title.as_ref().map(|title| format!("“{title}”: ")).unwrap_or_default();
        line("training", format!("{title}{}", facts.join(", ")));
    }
    if let Some(base) = &t.base_model {
        line("base", base.clone());
    }
    if !t.likely_triggers.is_empty() {
        line("trigger", format!("likely {}", t.likely_triggers.join(", ")));
    }
    if !t.top_tags.is_empty() {
        let tags: Vec<String> = t.top_tags.iter().map(|(tag, n)| format!("{tag} ({n})")).collect();
        line("tags", tags.join(", "));
    }
    line("metadata", format!("{} fields", info.metadata_keys));
    if info.problems.is_empty() {
        line("problems", "none".into());
    }
    for (i, problem) in info.problems.iter().enumerate() {
        line(if i == 0 { "problems" } else { "" }, format!("⚠ {problem}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_group_unet_levels_and_encoders() {
        assert_eq!(block_of("unet.down_blocks.1.attentions.0.proj_in"), "unet.down_blocks.1");
        assert_eq!(block_of("unet.mid_block.attentions.0.proj_in"), "unet.mid_block");
        assert_eq!(block_of("text_encoder_2.text_model.encoder.layers.0.mlp.fc1"), "text_encoder_2");
    }

    #[test]
    fn likely_triggers_are_tags_in_most_captions() {
        let metadata = BTreeMap::from([
            ("ss_num_train_images".to_string(), "10".to_string()),
            ("ss_tag_frequency".to_string(), r#"{"dataset": {"zeltmug": 10, " a mug": 9, "table": 3}}"#.to_string()),
        ]);
        let training = training(&metadata);
        assert_eq!(training.likely_triggers, ["zeltmug", "a mug"]);
        assert_eq!(training.top_tags[2], ("table".to_string(), 3));
    }
}
