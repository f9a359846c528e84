//! Combining and re-ranking LoRAs. `concat` stacks the inputs' factors, so
//! the merged module applies exactly Σ wᵢ·scaleᵢ·Bᵢ·Aᵢ at rank ΣRᵢ; `svd`
//! re-factorises that same sum to a chosen rank and reports how far from it
//! the result is. Resizing is the one-input `svd` merge.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, Result, anyhow, bail};
use candle_core::Tensor;
use rayon::prelude::*;
use serde::Serialize;

use super::factor::RankChoice;
use crate::model::lora_file::{ASSUMED, LoraFile, LoraModule};

/// A LoRA file with the weight to merge it at: `FILE[:WEIGHT]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Weighted {
    pub path: PathBuf,
    pub weight: f64,
}

impl FromStr for Weighted {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        // A trailing `:number` is a weight; any other colon belongs to the path.
        match text.rsplit_once(':') {
            Some((path, weight)) if !path.is_empty() && weight.parse::<f64>().is_ok() => {
                let weight: f64 = weight.parse().map_err(|_| format!("`{weight}` is not a weight"))?;
                if !weight.is_finite() {
                    return Err(format!("`{text}`: the weight must be a finite number"));
                }
                Ok(Self { path: path.into(), weight })
            }
            _ => Ok(Self { path: text.into(), weight: 1.0 }),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Method {
    /// Stack the factors: exact, ranks add up.
    Concat,
    /// Re-factorise the summed update to a chosen rank (an error is reported).
    Svd,
}

/// How well one module's re-factorised update matches the exact one.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ModuleError {
    pub path: String,
    pub rank: usize,
    /// ‖ΔW‖_F of the exact update.
    pub norm: f64,
    /// ‖ΔW − ΔŴ‖_F / ‖ΔW‖_F.
    pub error: f64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ErrorReport {
    pub modules: Vec<ModuleError>,
}

impl ErrorReport {
    /// The relative error of all modules' updates taken together.
    pub fn overall(&self) -> f64 {
        let squared = |f: fn(&ModuleError) -> f64| self.modules.iter().map(|m| f(m).powi(2)).sum::<f64>();
        let norm = squared(|m| m.norm).sqrt();
        if norm == 0.0 { 0.0 } else { squared(|m| m.error * m.norm).sqrt() / norm }
    }

    /// The worst `shown` modules and the overall figure, as a table.
    pub fn table(&self, shown: usize) -> String {
        let mut worst: Vec<&ModuleError> = self.modules.iter().collect();
        worst.sort_by(|a, b| b.error.total_cmp(&a.error));
        let width = worst.iter().take(shown).map(|m| m.path.len()).max().unwrap_or(6).max(6);
        let mut out = format!(
            "relative Frobenius error ‖ΔW − ΔŴ‖/‖ΔW‖, worst {} of {}:\n  {:<width$}  rank     ‖ΔW‖    error\n",
            shown.min(worst.len()),
            crate::words::counted(worst.len(), "module"),
            "module"
        );
        for module in worst.iter().take(shown) {
            out.push_str(&format!(
                "  {:<width$}  {:>4}  {:>7.4}  {:>6.3} %\n",
                module.path,
                module.rank,
                module.norm,
                module.error * 100.0
            ));
        }
        let range = rank_range(self.modules.iter().map(|m| m.rank));
        let modules = crate::words::counted(self.modules.len(), "module");
        out.push_str(&format!("overall: {:.3} % ({modules}, {range})\n", self.overall() * 100.0));
        out
    }
}

/// `rank 16`, or `ranks 4–32` when they differ.
pub fn rank_range(ranks: impl Iterator<Item = usize>) -> String {
    let ranks: BTreeSet<usize> = ranks.collect();
    match (ranks.first(), ranks.last()) {
        (Some(low), Some(high)) if low != high => format!("ranks {low}–{high}"),
        (Some(rank), _) => format!("rank {rank}"),
        _ => "no modules".into(),
    }
}

/// Refuses inputs made for different model families.
fn check_families(inputs: &[(LoraFile, f64)], names: &[String]) -> Result<()> {
    let known: Vec<(usize, &LoraFile)> = inputs
        .iter()
        .enumerate()
        .filter(|(_, (f, _))| f.family.evidence != ASSUMED)
        .map(|(i, (f, _))| (i, f))
        .collect();
    if let Some(((a, first), (b, other))) =
        known.iter().zip(known.iter().skip(1)).find(|(x, y)| x.1.family.family != y.1.family.family)
    {
        bail!(
            "{} is for {} (from {}) but {} is for {} (from {}): LoRAs of different model families cannot be merged",
            names[*a],
            first.family.family.label(),
            first.family.evidence,
            names[*b],
            other.family.family.label(),
            other.family.evidence
        );
    }
    Ok(())
}

/// One merged module from the parts that adapt `path` (a file and its weight each).
fn merge_module(
    path: &str,
    parts: &[(&LoraModule, f64, &str)],
    rule: Option<RankChoice>,
) -> Result<(LoraModule, Option<ModuleError>)> {
    let (first, _, first_name) = parts[0];
    let size = |m: &LoraModule| (m.up.dims()[0], m.down.dims()[1]);
    let (rows, columns) = size(first);
    let mut downs = Vec::with_capacity(parts.len());
    let mut ups = Vec::with_capacity(parts.len());
    for (module, weight, name) in parts {
        let (other_rows, other_columns) = size(module);
        if (other_rows, other_columns) != (rows, columns) {
            bail!(
                "`{path}` is {rows}×{columns} in {first_name} but {other_rows}×{other_columns} in {name}: these LoRAs are for different models"
            );
        }
        let (down, up) = module.matrices()?;
        downs.push(down);
        ups.push((up * (weight * module.scale()))?);
    }
    let (down, up) = (Tensor::cat(&downs, 0)?, Tensor::cat(&ups, 1)?);
    let (down, up, report) = match rule {
        None => (down, up, None),
        Some(rule) => {
            let factors = rule.product(&up, &down).with_context(|| format!("`{path}`"))?;
            let report =
                ModuleError { path: path.to_string(), rank: factors.rank, norm: factors.norm, error: factors.error };
            (factors.down, factors.up, Some(report))
        }
    };
    let rank = down.dim(0)?;
    let (down, up) =
        if first.is_conv() { (down.unsqueeze(2)?.unsqueeze(3)?, up.unsqueeze(2)?.unsqueeze(3)?) } else { (down, up) };
    let module = LoraModule { path: path.to_string(), name: first.name.clone(), down, up, alpha: rank as f64 };
    Ok((module, report))
}

/// Merges `inputs` (file, weight): exactly when `rule` is `None`, else
/// re-factorised per module to the rank `rule` picks. Modules missing from
/// some inputs take the others' parts. The result has the first input's
/// format, family and naming, and metadata saying what it was made from.
pub fn merge(
    inputs: &[(LoraFile, f64)],
    names: &[String],
    rule: Option<RankChoice>,
) -> Result<(LoraFile, Option<ErrorReport>)> {
    let Some((first, _)) = inputs.first() else { bail!("nothing to merge") };
    check_families(inputs, names)?;
    let indexes: Vec<HashMap<&str, &LoraModule>> =
        inputs.iter().map(|(file, _)| file.modules.iter().map(|m| (m.path.as_str(), m)).collect()).collect();
    let paths: BTreeSet<&str> = indexes.iter().flat_map(|index| index.keys().copied()).collect();
    let paths: Vec<&str> = paths.into_iter().collect();
    let merged: Vec<(LoraModule, Option<ModuleError>)> = paths
        .par_iter()
        .map(|path| {
            let parts: Vec<(&LoraModule, f64, &str)> = indexes
                .iter()
                .zip(inputs)
                .zip(names)
                .filter_map(|((index, (_, weight)), name)| Some((*index.get(path)?, *weight, name.as_str())))
                .collect();
            merge_module(path, &parts, rule)
        })
        .collect::<Result<_>>()?;
    let (modules, errors): (Vec<LoraModule>, Vec<Option<ModuleError>>) = merged.into_iter().unzip();
    let report = rule.map(|_| ErrorReport { modules: errors.into_iter().flatten().collect() });
    let file = LoraFile {
        format: first.format,
        family: first.family,
        naming: first.naming,
        modules,
        metadata: BTreeMap::new(),
        unmatched: Vec::new(),
    };
    Ok((file, report))
}

/// The title a file shows: its model-spec title, else its file name's stem.
pub fn title_of(file: &LoraFile, path: &Path) -> String {
    file.metadata.get("modelspec.title").or_else(|| file.metadata.get("ss_output_name")).cloned().unwrap_or_else(|| {
        path.file_stem().map_or_else(|| path.display().to_string(), |s| s.to_string_lossy().into_owned())
    })
}

/// The metadata of a merge: the first input's model identity (it describes
/// the base all inputs share), the inputs' titles as `modelspec.merged_from`,
/// and how it was made.
pub fn merged_metadata(
    inputs: &[(LoraFile, f64)],
    titles: &[String],
    how: &str,
    title: &str,
) -> BTreeMap<String, String> {
    const IDENTITY: [&str; 9] = [
        "modelspec.sai_model_spec",
        "modelspec.architecture",
        "modelspec.implementation",
        "modelspec.resolution",
        "modelspec.prediction_type",
        "ss_base_model_version",
        "ss_v2",
        "ss_v_parameterization",
        "ss_network_module",
    ];
    let mut metadata: BTreeMap<String, String> = inputs
        .first()
        .map(|(file, _)| {
            file.metadata
                .iter()
                .filter(|(k, _)| IDENTITY.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    let parts: Vec<String> = titles.iter().zip(inputs).map(|(t, (_, w))| format!("{t} × {w}")).collect();
    metadata.insert("modelspec.merged_from".into(), titles.join(", "));
    metadata.insert("modelspec.title".into(), title.to_string());
    metadata.insert("ss_output_name".into(), title.to_string());
    metadata.insert("modelspec.description".into(), format!("{how} of {}, made with Easel", parts.join(" + ")));
    metadata
}

/// Reads the files of a merge, naming the one that fails.
pub fn open_inputs(inputs: &[Weighted]) -> Result<Vec<(LoraFile, f64)>> {
    inputs
        .iter()
        .map(|input| Ok((LoraFile::open(&input.path)?, input.weight)))
        .collect::<Result<Vec<_>>>()
        .map_err(|e: anyhow::Error| anyhow!("{e:#}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_follow_the_last_colon_when_it_is_a_number() {
        let parse = |t: &str| t.parse::<Weighted>().unwrap();
        assert_eq!(parse("a.safetensors:0.5"), Weighted { path: "a.safetensors".into(), weight: 0.5 });
        assert_eq!(parse("a.safetensors"), Weighted { path: "a.safetensors".into(), weight: 1.0 });
        assert_eq!(parse("C:\\loras\\a.safetensors:-1").weight, -1.0);
        assert_eq!(parse("C:\\loras\\a.safetensors").path, PathBuf::from("C:\\loras\\a.safetensors"));
        assert!("a.safetensors:inf".parse::<Weighted>().is_err());
    }

    #[test]
    fn the_overall_error_weighs_modules_by_their_norm() {
        let module = |norm, error| ModuleError { path: "m".into(), rank: 4, norm, error };
        let report = ErrorReport { modules: vec![module(3.0, 0.0), module(4.0, 0.5)] };
        assert!((report.overall() - 2.0 / 5.0).abs() < 1e-12);
        assert!(report.table(5).contains("overall: 40.000 % (2 modules, rank 4)"));
    }
}
