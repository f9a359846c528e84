//! BLIP captions against transformers, on the tiny random
//! BlipForConditionalGeneration and references in tests/fixtures/blip
//! (written by make_fixtures.py there): the image processor's pixels, the
//! vision model's tokens, the text decoder's logits, greedy generation with
//! and without a prompt, and the tokenizer both ways. Then the loading
//! errors, and the random-weight folders the benchmark writes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use easel::captioner::blip::Blip;
use easel::captioner::blip::random::{tiny_config, write_random_blip};
use easel::captioner::{CaptionRequest, open};
use serde_json::Value;

/// f32 through a few layers, summed in another order than torch.
const TOLERANCE: f32 = 1e-4;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/blip")
}

fn folder() -> PathBuf {
    fixtures().join("blip-tiny")
}

fn refs() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixtures().join("refs.safetensors"), &Device::Cpu).unwrap()
}

fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("expected.json")).unwrap()).unwrap()
}

fn blip() -> Blip {
    Blip::load(&folder(), &Device::Cpu).unwrap()
}

fn images() -> Vec<image::RgbImage> {
    ["landscape", "portrait"]
        .iter()
        .map(|name| image::open(fixtures().join(format!("{name}.png"))).unwrap().to_rgb8())
        .collect()
}

/// Prints and checks the largest absolute difference, and the largest
/// relative to the reference's largest magnitude.
fn assert_close(what: &str, actual: &Tensor, expected: &Tensor, tolerance: f32) {
    assert_eq!(actual.dims(), expected.dims(), "{what}: shapes");
    let actual = actual.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let expected = expected.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let difference = actual.iter().zip(&expected).map(|(a, e)| (a - e).abs()).fold(0.0, f32::max);
    let scale = expected.iter().map(|e| e.abs()).fold(0.0, f32::max);
    eprintln!("{what}: max |Δ| {difference:.2e}, relative {:.2e}", difference / scale);
    assert!(difference < tolerance, "{what}: max |Δ| {difference} ≥ {tolerance}");
}

/// transformers' generated rows: up to and including the first end token
/// after the start, the padding after it dropped.
fn reference_sequences(ids: &Tensor, start: usize) -> Vec<Vec<u32>> {
    ids.to_dtype(DType::I64)
        .unwrap()
        .to_vec2::<i64>()
        .unwrap()
        .into_iter()
        .map(|row| {
            let end = row.iter().skip(start).position(|&id| id == 102).map_or(row.len(), |at| start + at + 1);
            row[..end].iter().map(|&id| id as u32).collect()
        })
        .collect()
}

#[test]
fn pixels_match_blips_image_processor() {
    let pixels = blip().pixel_values(&images()).unwrap();
    // PIL-exact resize: only the float normalisation differs.
    assert_close("pixel_values", &pixels, &refs()["pixel_values"], 1e-5);
}

#[test]
fn vision_tokens_and_text_logits_match_transformers() {
    let (blip, refs) = (blip(), refs());
    let tokens = blip.image_tokens(&refs["pixel_values"]).unwrap();
    assert_close("vision last_hidden_state", &tokens, &refs["image_tokens"], TOLERANCE);
    let ids = refs["text_ids"].to_dtype(DType::U32).unwrap();
    let logits = blip.text_logits(&ids, &refs["image_tokens"]).unwrap();
    assert_close("text decoder logits", &logits, &refs["text_logits"], TOLERANCE);
}

#[test]
fn greedy_generation_matches_transformers_ids_and_text() {
    let (blip, refs, expected) = (blip(), refs(), expected());
    let max_tokens = expected["max_new_tokens"].as_u64().unwrap() as usize;
    let pixels = &refs["pixel_values"];
    let prompt = expected["prompt"].as_str().unwrap().to_string();
    for (name, prompt) in [("plain", None), ("prompted", Some(prompt))] {
        let request = CaptionRequest { prompt: prompt.clone(), max_tokens, min_tokens: 0 };
        let start = blip.prompt_ids(prompt.as_deref()).len();
        let ours = blip.generate(pixels, &request).unwrap();
        let theirs = reference_sequences(&refs[&format!("generate_{name}")], start);
        eprintln!("{name}: ours {ours:?}\n{name}: transformers {theirs:?}");
        assert_eq!(ours, theirs, "{name}: generated ids");
        let texts: Vec<String> = ours.iter().map(|ids| blip.decode(ids)).collect();
        let reference: Vec<String> = serde_json::from_value(expected[format!("captions_{name}")].clone()).unwrap();
        assert_eq!(texts, reference, "{name}: decoded captions");
    }
    // One row stops at the end token, one runs to the limit: both paths covered.
    let plain = reference_sequences(&refs["generate_plain"], 1);
    assert!(plain.iter().any(|row| row.last() == Some(&102)) && plain.iter().any(|row| row.len() == 1 + max_tokens));
}

#[test]
fn the_captioner_interface_captions_images_in_order() {
    let expected = expected();
    let mut captioner = open(&folder(), &Device::Cpu).unwrap();
    assert_eq!(captioner.describe(), "BLIP (blip-tiny)");
    assert!(captioner.preferred_batch() >= 1);
    let request = CaptionRequest {
        prompt: Some(expected["prompt"].as_str().unwrap().into()),
        max_tokens: expected["max_new_tokens"].as_u64().unwrap() as usize,
        min_tokens: 0,
    };
    let captions = captioner.caption(&images(), &request).unwrap();
    let reference: Vec<String> = serde_json::from_value(expected["captions_prompted"].clone()).unwrap();
    assert_eq!(captions, reference);
    // Each image alone gives its caption from the batch.
    for (image, caption) in images().into_iter().zip(&reference) {
        assert_eq!(&captioner.caption(&[image], &request).unwrap()[0], caption);
    }
    assert!(captioner.caption(&[], &request).unwrap().is_empty());
}

#[test]
fn min_tokens_holds_off_the_end_token() {
    let (blip, refs) = (blip(), refs());
    let request = CaptionRequest { prompt: None, max_tokens: 12, min_tokens: 12 };
    for row in blip.generate(&refs["pixel_values"], &request).unwrap() {
        assert_eq!(row.len(), 1 + 12);
        assert!(!row.contains(&102));
    }
}

#[test]
fn wordpiece_matches_berts_tokenizer() {
    let (blip, expected) = (blip(), expected());
    let prompt_ids: Vec<u32> = serde_json::from_value(expected["prompt_ids"].clone()).unwrap();
    // [CLS] prompt [SEP] → BOS prompt.
    let mut wanted = vec![blip.prompt_ids(None)[0]];
    wanted.extend(&prompt_ids[1..prompt_ids.len() - 1]);
    assert_eq!(blip.prompt_ids(Some(expected["prompt"].as_str().unwrap())), wanted);
    for (text, ids) in expected["tokenized"].as_object().unwrap() {
        let ids: Vec<u32> = serde_json::from_value(ids.clone()).unwrap();
        assert_eq!(blip.prompt_ids(Some(text))[1..], ids, "{text}");
    }
    let ids: Vec<u32> = serde_json::from_value(expected["decoded"]["ids"].clone()).unwrap();
    assert_eq!(blip.decode(&ids), expected["decoded"]["text"].as_str().unwrap());
}

/// A copy of the fixture folder without `leave_out`, plus `extra` files.
fn altered_copy(leave_out: &str, extra: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(folder()).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap() != leave_out {
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    for name in extra {
        std::fs::write(dir.path().join(name), b"not really a pickle").unwrap();
    }
    dir
}

fn open_error(folder: &Path) -> String {
    format!("{:#}", open(folder, &Device::Cpu).err().expect("the folder should be refused"))
}

#[test]
fn a_missing_folder_or_file_is_named() {
    let message = open_error(Path::new("/no/such/blip-folder"));
    assert!(message.contains("/no/such/blip-folder") && message.contains("does not exist"), "{message}");
    assert!(message.contains("huggingface-cli download Salesforce/blip-image-captioning-base"), "{message}");

    let no_config = altered_copy("config.json", &[]);
    let message = open_error(no_config.path());
    assert!(message.contains("no config.json") && message.contains("huggingface-cli download"), "{message}");

    let no_weights = altered_copy("model.safetensors", &[]);
    let message = open_error(no_weights.path());
    assert!(message.contains("model.safetensors") && message.contains("huggingface-cli download"), "{message}");

    let pickle_only = altered_copy("model.safetensors", &["pytorch_model.bin"]);
    let message = open_error(pickle_only.path());
    assert!(message.contains("pytorch_model.bin") && message.contains("pickle"), "{message}");

    let no_tokenizer = altered_copy("tokenizer.json", &[]);
    let message = open_error(no_tokenizer.path());
    assert!(message.contains("vocab.txt") && message.contains("tokenizer.json"), "{message}");

    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("config.json"), r#"{"model_type": "clip", "architectures": ["CLIPModel"]}"#)
        .unwrap();
    let message = open_error(other.path());
    assert!(message.contains("CLIPModel") && message.contains("BLIP"), "{message}");
}

#[test]
fn a_missing_tensor_is_named_with_its_file() {
    let dir = altered_copy("model.safetensors", &[]);
    let source = folder().join("model.safetensors");
    let mut tensors = candle_core::safetensors::load(&source, &Device::Cpu).unwrap();
    tensors.remove("text_decoder.bert.encoder.layer.1.output.dense.weight").unwrap();
    candle_core::safetensors::save(&tensors, dir.path().join("model.safetensors")).unwrap();
    let message = open_error(dir.path());
    assert!(message.contains("model.safetensors"), "{message}");
    assert!(message.contains("text_decoder.bert.encoder.layer.1.output.dense.weight"), "{message}");
}

#[test]
fn random_folders_load_and_caption_deterministically() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_config();
    write_random_blip(dir.path(), &config).unwrap();
    let mut captioner = open(dir.path(), &Device::Cpu).unwrap();
    let request = CaptionRequest { max_tokens: 8, ..CaptionRequest::default() };
    let first = captioner.caption(&images(), &request).unwrap();
    eprintln!("random captions: {first:?}");
    assert_eq!(first.len(), 2);
    assert!(first.iter().all(|caption| !caption.is_empty()), "{first:?}");
    assert_eq!(captioner.caption(&images(), &request).unwrap(), first);
    let again = tempfile::tempdir().unwrap();
    write_random_blip(again.path(), &config).unwrap();
    assert_eq!(open(again.path(), &Device::Cpu).unwrap().caption(&images(), &request).unwrap(), first);
}
