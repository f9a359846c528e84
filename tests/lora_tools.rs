//! `easel lora …`: conversion round trips, metadata hygiene, merges, resizes,
//! extraction and bad input, on the fixture model's LoRA files.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use common::{fixture, fixture_model, max_abs_diff, unet_output};
use easel::lora::factor::RankRule;
use easel::lora::{extract, merge};
use easel::model::lora_file::{self, ExportOptions, LoraFile, LoraFormat};
use easel::model::pipeline::{LoadOptions, StableDiffusion};

mod common;

/// Every tensor of a safetensors file as (dtype, shape, bytes), and its metadata.
type Stored = (BTreeMap<String, (String, Vec<usize>, Vec<u8>)>, BTreeMap<String, String>);

fn stored(path: &Path) -> Stored {
    let bytes = std::fs::read(path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let tensors = file
        .tensors()
        .into_iter()
        .map(|(name, view)| (name, (format!("{:?}", view.dtype()), view.shape().to_vec(), view.data().to_vec())))
        .collect();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    (tensors, header.metadata().clone().unwrap_or_default().into_iter().collect())
}

fn export(source: &Path, out: &Path, format: LoraFormat) {
    lora_file::export(source, out, &ExportOptions { format, title: None, strip_metadata: false }).unwrap();
}

fn output_with(paths: &[(&Path, f64)]) -> Tensor {
    let mut model = fixture_model();
    for (index, (path, weight)) in paths.iter().enumerate() {
        LoraFile::read(path, &mut model).unwrap().apply(&mut model, *weight, &format!("lora{index}")).unwrap();
    }
    unet_output(&model)
}

#[test]
fn conversions_round_trip_bit_identically_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["lora_attn", "lora_kohya_default"] {
        for (start, there, back) in
            [("kohya", LoraFormat::Peft, LoraFormat::Kohya), ("diffusers", LoraFormat::Kohya, LoraFormat::Peft)]
        {
            let original = fixture(&format!("lora/{name}.{start}.safetensors"));
            let converted = dir.path().join(format!("{name}.{start}.there.safetensors"));
            let returned = dir.path().join(format!("{name}.{start}.back.safetensors"));
            export(&original, &converted, there);
            export(&converted, &returned, back);
            let (tensors, metadata) = stored(&original);
            let (back_tensors, back_metadata) = stored(&returned);
            assert_eq!(tensors, back_tensors, "{name}.{start}: tensors changed on the way");
            if start == "kohya" {
                assert_eq!(metadata, back_metadata, "{name}.{start}: metadata changed on the way");
            }
            // Every version applies identically (alpha 8 carried in PEFT's header).
            let reference = output_with(&[(&original, 1.0)]);
            for path in [&converted, &returned] {
                assert_eq!(max_abs_diff(&output_with(&[(path, 1.0)]), &reference), 0.0, "{}", path.display());
            }
        }
    }
}

fn sdxl_kohya_file(path: &Path) {
    let names = [
        "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q",
        "lora_unet_middle_block_1_proj_in",
        "lora_unet_output_blocks_5_1_transformer_blocks_1_ff_net_0_proj",
        "lora_te1_text_model_encoder_layers_0_self_attn_k_proj",
        "lora_te2_text_model_encoder_layers_31_mlp_fc2",
    ];
    let mut tensors = HashMap::new();
    for (i, name) in names.iter().enumerate() {
        let rank = 2 + i;
        let down = Tensor::randn(0f32, 1.0, (rank, 8), &Device::Cpu).unwrap().to_dtype(DType::F16).unwrap();
        let up = Tensor::randn(0f32, 1.0, (6, rank), &Device::Cpu).unwrap().to_dtype(DType::F16).unwrap();
        tensors.insert(format!("{name}.lora_down.weight"), down);
        tensors.insert(format!("{name}.lora_up.weight"), up);
        let alpha = Tensor::new(rank as f32 / 2.0, &Device::Cpu).unwrap().to_dtype(DType::F16).unwrap();
        tensors.insert(format!("{name}.alpha"), alpha);
    }
    candle_core::safetensors::save(&tensors, path).unwrap();
}

#[test]
fn sdxl_names_and_mixed_ranks_survive_the_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("sdxl.safetensors");
    sdxl_kohya_file(&original);
    let peft = dir.path().join("sdxl.peft.safetensors");
    let back = dir.path().join("sdxl.back.safetensors");
    export(&original, &peft, LoraFormat::Peft);
    export(&peft, &back, LoraFormat::Kohya);
    assert_eq!(stored(&original).0, stored(&back).0);

    let file = LoraFile::open(&peft).unwrap();
    assert_eq!(file.family.family, easel::model::Family::Sdxl);
    let paths: Vec<&str> = file.modules.iter().map(|m| m.path.as_str()).collect();
    assert!(paths.contains(&"unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q"), "{paths:?}");
    assert!(paths.contains(&"text_encoder_2.text_model.encoder.layers.31.mlp.fc2"), "{paths:?}");
    // Ranks 2…6 with alpha rank/2: PEFT keeps them in rank_pattern and alpha_pattern.
    let alphas: Vec<(usize, f64)> = file.modules.iter().map(|m| (m.rank(), m.alpha)).collect();
    assert!(alphas.iter().all(|(rank, alpha)| *alpha == *rank as f64 / 2.0), "{alphas:?}");
}

#[test]
fn exports_drop_local_paths_and_can_strip_the_training_record() {
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("mine.safetensors");
    let mut file = LoraFile::open(&fixture("lora/lora_attn.kohya.safetensors")).unwrap();
    file.metadata = BTreeMap::from([
        ("ss_sd_model_name".into(), "/home/operator/models/realistic-v5.safetensors".into()),
        ("ss_tag_frequency".into(), r#"{"/home/operator/mug/dataset": {"zeltmug": 4}}"#.into()),
        ("ss_seed".into(), "3".into()),
        ("modelspec.architecture".into(), "stable-diffusion-v1/lora".into()),
    ]);
    file.save(&original, LoraFormat::Kohya).unwrap();

    let shared = dir.path().join("shared.safetensors");
    let options = ExportOptions { format: LoraFormat::Kohya, title: Some("Zelt mug".into()), strip_metadata: false };
    lora_file::export(&original, &shared, &options).unwrap();
    let (_, metadata) = stored(&shared);
    assert_eq!(metadata["ss_sd_model_name"], "realistic-v5.safetensors");
    assert_eq!(metadata["ss_tag_frequency"], r#"{"dataset":{"zeltmug":4}}"#);
    assert_eq!(metadata["modelspec.title"], "Zelt mug");
    assert!(metadata.values().all(|v| !v.contains("/home/")), "{metadata:?}");

    let stripped = dir.path().join("stripped.safetensors");
    let options = ExportOptions { format: LoraFormat::Peft, title: None, strip_metadata: true };
    lora_file::export(&original, &stripped, &options).unwrap();
    let (_, metadata) = stored(&stripped);
    let keys: Vec<&str> = metadata.keys().map(String::as_str).collect();
    assert_eq!(keys, ["format", "lora_adapter_metadata", "modelspec.architecture"]);
}

fn easel(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_easel")).args(args).output().unwrap()
}

fn text(path: &Path) -> String {
    path.to_str().unwrap().to_string()
}

#[test]
fn info_describes_a_file_and_its_problems() {
    let output = easel(&["lora", "info", &text(&fixture("lora/lora_kohya_default.kohya.safetensors")), "--json"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let info: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(info["format"], "kohya");
    assert_eq!(info["modules"], 72);
    assert_eq!(info["rank_alpha"], serde_json::json!([[4, 8.0, 72]]));
    assert_eq!(info["problems"], serde_json::json!([]));

    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.safetensors");
    let mut file = LoraFile::open(&fixture("lora/lora_attn.kohya.safetensors")).unwrap();
    let nan = Tensor::full(f32::NAN, file.modules[0].up.dims(), &Device::Cpu).unwrap();
    file.modules[0].up = nan;
    file.modules[1].up = file.modules[1].up.zeros_like().unwrap();
    file.save(&broken, LoraFormat::Kohya).unwrap();
    let output = easel(&["lora", "info", &text(&broken)]);
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(report.contains("1 module holds NaN"), "{report}");
    assert!(report.contains("1 module has an all-zero up matrix"), "{report}");
}

#[test]
fn bad_input_is_named_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.safetensors");
    let not_safetensors = dir.path().join("notes.safetensors");
    std::fs::write(&not_safetensors, "hello").unwrap();
    let pickle = dir.path().join("old.ckpt");
    std::fs::write(&pickle, "x").unwrap();
    let model_file = fixture("tiny-sd15.single_file.safetensors");
    for (input, expected) in [
        (not_safetensors.clone(), "not a readable safetensors file"),
        (pickle, "pickle"),
        (model_file, "a model's weights, not a LoRA"),
        (dir.path().join("missing.safetensors"), "no such file"),
    ] {
        let output = easel(&["lora", "convert", &text(&input), "--to", "peft", "--out", &text(&out)]);
        let error = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success() && error.contains(expected), "{}: {error}", input.display());
        assert!(error.contains(&input.display().to_string()), "the error names the file: {error}");
        assert!(!out.exists());
    }
    let kohya = fixture("lora/lora_attn.kohya.safetensors");
    let output = easel(&["lora", "convert", &text(&kohya), "--to", "kohya", "--out", &text(&kohya)]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("is also an input"));
    std::fs::write(&out, "keep me").unwrap();
    let output = easel(&["lora", "convert", &text(&kohya), "--to", "peft", "--out", &text(&out)]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("already exists"));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "keep me");
}

fn delta_map(file: &LoraFile, weight: f64) -> HashMap<String, Tensor> {
    file.modules.iter().map(|m| (m.path.clone(), (m.delta().unwrap() * weight).unwrap())).collect()
}

fn frobenius(t: &Tensor) -> f64 {
    t.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap().sqrt() as f64
}

fn names(paths: &[&Path]) -> Vec<String> {
    paths.iter().map(|p| p.display().to_string()).collect()
}

#[test]
fn a_concat_merge_applies_exactly_like_both_loras() {
    let (a, b) =
        (fixture("lora/lora_attn.kohya.safetensors"), fixture("lora/lora_kohya_default.diffusers.safetensors"));
    let inputs = vec![(LoraFile::open(&a).unwrap(), 0.7), (LoraFile::open(&b).unwrap(), -0.5)];
    let (merged, report) = merge::merge(&inputs, &names(&[&a, &b]), None).unwrap();
    assert!(report.is_none());
    assert_eq!(merged.modules.len(), 72, "the union of 48 and 72 modules");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("merged.safetensors");
    merged.save(&out, LoraFormat::Kohya).unwrap();
    let expected = output_with(&[(&a, 0.7), (&b, -0.5)]);
    let diff = max_abs_diff(&output_with(&[(&out, 1.0)]), &expected);
    assert!(diff < 1e-5, "max |Δ| {diff}");
    // Ranks add up where both adapt a module.
    let to_q = merged.modules.iter().find(|m| m.path.ends_with("attn1.to_q")).unwrap();
    assert_eq!(to_q.rank(), 8);
}

/// The relative error of each merged module against the exact weighted sum, beside the reported one.
fn check_reported_errors(inputs: &[(LoraFile, f64)], merged: &LoraFile, report: &merge::ErrorReport) -> f64 {
    let mut exact: HashMap<String, Tensor> = HashMap::new();
    for (file, weight) in inputs {
        for (path, delta) in delta_map(file, *weight) {
            let sum = match exact.remove(&path) {
                Some(previous) => (previous + delta).unwrap(),
                None => delta,
            };
            exact.insert(path, sum);
        }
    }
    let approx = delta_map(merged, 1.0);
    let mut worst: f64 = 0.0;
    for module in &report.modules {
        let truth = &exact[&module.path];
        let measured = frobenius(&(truth - &approx[&module.path]).unwrap()) / frobenius(truth);
        assert!(
            (measured - module.error).abs() < 1e-4,
            "{}: reported {} measured {measured}",
            module.path,
            module.error
        );
        assert!((frobenius(truth) - module.norm).abs() < 1e-4 * module.norm.max(1.0), "{}: norm", module.path);
        worst = worst.max(measured);
    }
    worst
}

#[test]
fn svd_merges_and_resizes_report_their_true_error_and_reach_zero_at_full_rank() {
    let (a, b) = (fixture("lora/lora_attn.kohya.safetensors"), fixture("lora/lora_kohya_default.kohya.safetensors"));
    let inputs = vec![(LoraFile::open(&a).unwrap(), 1.0), (LoraFile::open(&b).unwrap(), 0.5)];
    let names = names(&[&a, &b]);
    let (merged, report) = merge::merge(&inputs, &names, Some(RankRule::Fixed(3).into())).unwrap();
    let report = report.unwrap();
    assert!(check_reported_errors(&inputs, &merged, &report) > 0.05, "rank 3 of a rank-8 sum loses something");
    assert!(report.overall() > 0.05);

    let (merged, report) = merge::merge(&inputs, &names, Some(RankRule::Fixed(8).into())).unwrap();
    let report = report.unwrap();
    assert!(check_reported_errors(&inputs, &merged, &report) < 1e-5);
    assert!(report.overall() < 1e-6, "full rank: {}", report.overall());

    let single = vec![(LoraFile::open(&b).unwrap(), 1.0)];
    let names = names[1..].to_vec();
    for (rule, lossless) in [(RankRule::Fixed(2), false), (RankRule::Fixed(4), true), (RankRule::SvFro(0.9), false)] {
        let (resized, report) = merge::merge(&single, &names, Some(rule.into())).unwrap();
        let report = report.unwrap();
        let worst = check_reported_errors(&single, &resized, &report);
        if lossless {
            assert!(worst < 1e-5, "{rule}: {worst}");
        }
        if let RankRule::SvFro(kept) = rule {
            // Keeping ≥ 90 % of the Frobenius norm leaves at most √(1 − 0.9²) of it.
            assert!(worst <= (1.0 - kept * kept).sqrt() + 1e-6, "{rule}: {worst}");
        }
    }
}

#[test]
fn merges_refuse_other_families_and_impossible_ranks_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sdxl = dir.path().join("sdxl.safetensors");
    sdxl_kohya_file(&sdxl);
    let sd1 = fixture("lora/lora_attn.kohya.safetensors");
    let mut labelled = LoraFile::open(&sd1).unwrap();
    labelled.metadata.insert("ss_base_model_version".into(), "sd_v1".into());
    let sd1_labelled = dir.path().join("sd1.safetensors");
    labelled.save(&sd1_labelled, LoraFormat::Kohya).unwrap();
    let out = dir.path().join("out.safetensors");
    let output = easel(&["lora", "merge", &text(&sd1_labelled), &text(&sdxl), "--out", &text(&out)]);
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains("different model families") && error.contains("sdxl.safetensors"), "{error}");
    assert!(!out.exists());

    let output = easel(&["lora", "resize", &text(&sd1), "--rank", "100", "--out", &text(&out)]);
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains("rank 100 is larger than") && error.contains("unet."), "{error}");
    assert!(!out.exists());

    let output = easel(&[
        "lora",
        "resize",
        &text(&sd1),
        "--dynamic",
        "sv_fro=0.95",
        "--save-precision",
        "f16",
        "--out",
        &text(&out),
    ]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(table.contains("overall:") && table.contains("relative Frobenius error"), "{table}");
    let resized = LoraFile::open(&out).unwrap();
    assert!(resized.modules.iter().all(|m| m.down.dtype() == DType::F16 && m.up.dtype() == DType::F16));

    // --rank with --dynamic caps what the rule picks, as kohya's --new_rank does.
    let capped = dir.path().join("capped.safetensors");
    let output =
        easel(&["lora", "resize", &text(&sd1), "--dynamic", "sv_fro=0.999", "--rank", "2", "--out", &text(&capped)]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(LoraFile::open(&capped).unwrap().modules.iter().all(|m| m.rank() <= 2));
}

/// A model folder or file; the fixture's single file with the folder's
/// configs (its attention heads cannot be read from tensor shapes).
fn load(path: &Path) -> StableDiffusion {
    let config_folder = path.is_file().then(|| fixture("diffusers"));
    StableDiffusion::load(path, &LoadOptions { config_folder, ..LoadOptions::default() }).unwrap()
}

/// The UNet output with `loras` applied at run time, and with them merged
/// into the weights and rounded to the f16 the fixture model is stored in:
/// what a bake must give exactly, up to the order of f32 additions.
fn runtime_outputs(base: &Path, loras: &[(&Path, f64)]) -> (Tensor, Tensor) {
    let mut model = load(base);
    for (index, (path, weight)) in loras.iter().enumerate() {
        LoraFile::read(path, &mut model).unwrap().apply(&mut model, *weight, &format!("lora{index}")).unwrap();
    }
    let applied = unet_output(&model);
    model.merge_adapters().unwrap();
    for (_, layer) in model.lora_layers() {
        layer.base.weight = layer.base.weight.to_dtype(DType::F16).unwrap().to_dtype(DType::F32).unwrap();
    }
    (applied, unet_output(&model))
}

#[test]
fn baking_equals_applying_at_run_time_for_folders_and_single_files() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) =
        (fixture("lora/lora_kohya_default.kohya.safetensors"), fixture("lora/lora_attn.diffusers.safetensors"));
    let loras = [(a.as_path(), 0.8), (b.as_path(), -0.5)];
    let lora_args = [format!("{}:0.8", text(&a)), format!("{}:-0.5", text(&b))];
    for (base, out) in [
        (fixture("diffusers"), dir.path().join("from-folder.safetensors")),
        (fixture("diffusers"), dir.path().join("from-folder")),
        (fixture("tiny-sd15.single_file.safetensors"), dir.path().join("from-file.safetensors")),
    ] {
        let output = easel(&[
            "lora",
            "bake",
            "--model",
            &text(&base),
            "--lora",
            &lora_args[0],
            "--lora",
            &lora_args[1],
            "--out",
            &text(&out),
        ]);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        assert!(String::from_utf8_lossy(&output.stdout).contains("72 layers changed"));
        let baked = unet_output(&load(&out));
        let (applied, rounded) = runtime_outputs(&base, &loras);
        let (diff, storage) = (max_abs_diff(&baked, &rounded), max_abs_diff(&baked, &applied));
        eprintln!(
            "{} → {}: max |Δ| {diff:e} vs merged at run time in the base's f16, {storage:e} vs applied in f32",
            base.display(),
            out.display()
        );
        assert!(diff < 1e-4, "{}: max |Δ| {diff}", out.display());
        assert!(max_abs_diff(&unet_output(&fixture_model()), &applied) > 0.5, "the LoRAs change the output");
    }
}

#[test]
fn extraction_recovers_a_low_rank_difference() {
    let dir = tempfile::tempdir().unwrap();
    let lora = fixture("lora/lora_kohya_default.kohya.safetensors");
    let tuned = dir.path().join("tuned");
    easel::lora::bake::bake(&fixture("diffusers"), &[merge::Weighted { path: lora.clone(), weight: 1.0 }], &tuned)
        .unwrap();
    let options = |rule: RankRule| extract::ExtractOptions {
        rule: rule.into(),
        targets: easel::model::lora::LoraTargets::Transformer,
        text_encoders: true,
        min_diff: 1e-6,
    };
    let exact = extract::extract(&fixture("diffusers"), &tuned, &options(RankRule::Fixed(4))).unwrap();
    let original = LoraFile::open(&lora).unwrap();
    assert_eq!(exact.file.modules.len(), original.modules.len(), "only the LoRA's layers differ");
    assert!(exact.unchanged > 0, "the text encoder layers are unchanged and left out");
    let truth = delta_map(&original, 1.0);
    for module in &exact.file.modules {
        let expected = &truth[&module.path];
        let relative = frobenius(&(module.delta().unwrap() - expected).unwrap()) / frobenius(expected);
        // The tuned model holds W + ΔW rounded to f16: ΔW comes back to that rounding.
        assert!(relative < 1e-3, "{}: recovered ΔW off by {relative}", module.path);
    }
    assert!(exact.report.overall() < 1e-3, "rank 4 of a rank-4 difference: {}", exact.report.overall());

    let lossy = extract::extract(&fixture("diffusers"), &tuned, &options(RankRule::Fixed(2))).unwrap();
    let single = vec![(original, 1.0)];
    let worst = check_reported_errors(&single, &lossy.file, &lossy.report);
    assert!(worst > 0.05 && lossy.report.overall() > 0.05);

    // The extracted file applies like the LoRA it came from.
    let out = dir.path().join("extracted.safetensors");
    exact.file.save(&out, LoraFormat::Kohya).unwrap();
    let diff = max_abs_diff(&output_with(&[(&out, 1.0)]), &output_with(&[(&lora, 1.0)]));
    assert!(diff < 0.05, "max |Δ| {diff}");
}

#[test]
fn bakes_and_extractions_refuse_what_does_not_fit_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sdxl_lora = dir.path().join("sdxl.safetensors");
    sdxl_kohya_file(&sdxl_lora);
    let out = dir.path().join("baked.safetensors");
    let base = text(&fixture("diffusers"));
    let output = easel(&["lora", "bake", "--model", &base, "--lora", &text(&sdxl_lora), "--out", &text(&out)]);
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains("is a LoRA for SDXL") && error.contains("sdxl.safetensors"), "{error}");
    assert!(!out.exists());

    let sdxl_model = dir.path().join("sdxl-model");
    easel::model::builtin::write_random_model(&sdxl_model, &common::families::sdxl()).unwrap();
    let extracted = dir.path().join("extracted.safetensors");
    let output = easel(&[
        "lora",
        "extract",
        "--base",
        &base,
        "--tuned",
        &text(&sdxl_model),
        "--rank",
        "4",
        "--out",
        &text(&extracted),
    ]);
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains("one family") && error.contains("SDXL"), "{error}");
    assert!(!extracted.exists());

    let output =
        easel(&["lora", "extract", "--base", &base, "--tuned", &base, "--rank", "4", "--out", &text(&extracted)]);
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains("do not differ"), "{error}");
    assert!(!extracted.exists());
}
