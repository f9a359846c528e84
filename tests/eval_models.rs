//! The evaluation's embedding models against transformers, on the tiny
//! random models and references in tests/fixtures/eval (written by
//! make_fixtures.py there: CLIPModel, Dinov2Model, their PIL image processors).
//!
//! Embeddings are compared as L2-normalised vectors, element by element, in
//! absolute terms: every element lies in [−1, 1], so 1e-4 absolute is a
//! relative 1e-4 of the vector's length.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use easel::evaluate::embed::{Clip, Dino};
use easel::model::tokenizer::{ClipTokenizer, Padding};

/// Embeddings: f32 through a few layers, summed in a different order than
/// torch (measured: max |Δ| ≤ 2e-7; real models are deeper and wider).
const EMBEDDING_TOLERANCE: f32 = 1e-4;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/eval")
}

fn refs() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixtures().join("refs.safetensors"), &Device::Cpu).unwrap()
}

fn clip() -> Clip {
    Clip::load(&fixtures().join("clip-tiny"), &Device::Cpu).unwrap()
}

fn dino() -> Dino {
    Dino::load(&fixtures().join("dinov2-tiny"), &Device::Cpu).unwrap()
}

fn image(name: &str) -> image::RgbImage {
    image::open(fixtures().join(format!("{name}.png"))).unwrap().to_rgb8()
}

const IMAGES: [&str; 3] = ["landscape", "portrait", "large"];

/// The largest |a − b| over every element; the shapes must agree.
fn max_difference(actual: &[Vec<f32>], expected: &Tensor) -> f32 {
    let expected = expected.to_vec2::<f32>().unwrap();
    assert_eq!(actual.len(), expected.len());
    actual
        .iter()
        .zip(&expected)
        .flat_map(|(a, e)| {
            assert_eq!(a.len(), e.len());
            a.iter().zip(e).map(|(a, e)| (a - e).abs())
        })
        .fold(0.0, f32::max)
}

fn assert_embeddings(what: &str, actual: &[Vec<f32>], expected: &Tensor) {
    let difference = max_difference(actual, expected);
    eprintln!("{what}: max |Δ| {difference:.2e}");
    assert!(difference < EMBEDDING_TOLERANCE, "{what}: max |Δ| {difference} ≥ {EMBEDDING_TOLERANCE}");
}

#[test]
fn clip_image_embeddings_match_transformers() {
    let refs = refs();
    let embeddings = clip().pixel_embeddings(&refs["clip_pixels"]).unwrap();
    assert_embeddings("CLIP image", &embeddings, &refs["clip_image"]);
}

#[test]
fn clip_text_embeddings_match_transformers() {
    let refs = refs();
    let clip = clip();
    let embeddings = clip.id_embeddings(&refs["clip_input_ids"]).unwrap();
    assert_embeddings("CLIP text from ids", &embeddings, &refs["clip_text"]);

    let texts = texts();
    let embeddings = clip.text_embeddings(&texts).unwrap();
    assert_embeddings("CLIP text", &embeddings, &refs["clip_text"]);
    assert!(clip.text_embeddings(&[]).unwrap().is_empty());
}

/// The fixture folder has no tokenizer files, so the shipped one is used;
/// it gives transformers' CLIPTokenizer ids (a long prompt cut at 77).
#[test]
fn shipped_tokenizer_gives_transformers_ids() {
    let expected = refs()["clip_input_ids"].to_vec2::<i64>().unwrap();
    let tokenizer = ClipTokenizer::shipped(Padding::EndOfText);
    for (text, expected) in texts().iter().zip(expected) {
        let ids: Vec<i64> = tokenizer.encode(text).into_iter().map(i64::from).collect();
        assert_eq!(ids, expected, "{text}");
    }
}

fn texts() -> Vec<String> {
    let bytes = std::fs::read(fixtures().join("refs.safetensors")).unwrap();
    let (_, metadata) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let texts = &metadata.metadata().as_ref().unwrap()["texts"];
    serde_json::from_str(texts).unwrap()
}

#[test]
fn dino_embeddings_match_transformers() {
    let refs = refs();
    let dino = dino();
    // 40 px: the stored 5×5 position grid as it is.
    let embeddings = dino.pixel_embeddings(&refs["dino_pixels_40"]).unwrap();
    assert_embeddings("DINOv2 at its position grid", &embeddings, &refs["dino_image_40"]);
    // 32 px: positions interpolated to 4×4 (bicubic, as transformers does).
    let embeddings = dino.pixel_embeddings(&refs["dino_pixels_32"]).unwrap();
    assert_embeddings("DINOv2 with interpolated positions", &embeddings, &refs["dino_image_32"]);
}

/// transformers' PIL processors resize with PIL's bicubic, which Easel
/// reimplements with PIL's own fixed-point weights and per-pass rounding, so
/// the 8-bit pixels agree exactly (measured: max |Δ| 0 on all three images,
/// upscaled and downscaled). What may remain is the f32
/// rescale and normalisation against numpy's, a few ulps; one 8-bit level
/// would be ≥ 1/255/0.2758 ≈ 0.0142, so any filter or crop error fails.
const PIXEL_TOLERANCE: f32 = 1e-6;

#[test]
fn preprocessing_matches_the_image_processors() {
    let refs = refs();
    let (clip, dino) = (clip(), dino());
    for name in IMAGES {
        let images = [image(name)];
        for (model, actual) in [("clip", clip.pixel_values(&images)), ("dino", dino.pixel_values(&images))] {
            let actual = actual.unwrap();
            let expected = &refs[&format!("{model}_pixel_values_{name}")];
            assert_eq!(actual.dims(), expected.dims(), "{model} {name}");
            let difference =
                (actual - expected).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>();
            let difference = difference.unwrap();
            eprintln!("{model} pixel values of {name}: max |Δ| {difference:.2e}");
            assert!(difference < PIXEL_TOLERANCE, "{model} {name}: max |Δ| {difference}");
        }
    }
}

#[test]
fn image_embeddings_match_transformers_end_to_end() {
    let refs = refs();
    let images: Vec<_> = IMAGES.iter().map(|name| image(name)).collect();
    let clip_embeddings = clip().image_embeddings(&images).unwrap();
    let dino_embeddings = dino().image_embeddings(&images).unwrap();
    for (i, name) in IMAGES.iter().enumerate() {
        let pick = |key: String| refs[&key].clone();
        assert_embeddings(&format!("CLIP {name}"), &clip_embeddings[i..=i], &pick(format!("clip_image_{name}")));
        assert_embeddings(&format!("DINOv2 {name}"), &dino_embeddings[i..=i], &pick(format!("dino_image_{name}")));
    }
}

#[test]
fn clip_refuses_pixels_of_another_size() {
    let pixels = Tensor::zeros((1, 3, 40, 40), candle_core::DType::F32, &Device::Cpu).unwrap();
    let error = clip().pixel_embeddings(&pixels).unwrap_err();
    assert!(format!("{error:#}").contains("32×32"), "{error:#}");
}

#[test]
fn a_missing_folder_is_named_with_what_it_needs() {
    let missing = fixtures().join("no-such-model");
    let error = Clip::load(&missing, &Device::Cpu).err().expect("an error");
    let message = format!("{error:#}");
    assert!(message.contains(&missing.display().to_string()), "{message}");
    assert!(message.contains("config.json and model.safetensors"), "{message}");
    assert!(message.contains("CLIPModel"), "{message}");

    // A folder with the config but not the weights.
    let folder = tempfile::tempdir().unwrap();
    std::fs::copy(fixtures().join("dinov2-tiny/config.json"), folder.path().join("config.json")).unwrap();
    let message = format!("{:#}", Dino::load(folder.path(), &Device::Cpu).err().expect("an error"));
    assert!(message.contains(&folder.path().display().to_string()), "{message}");
    assert!(message.contains("Dinov2Model"), "{message}");
}

#[test]
fn a_clip_folder_is_not_a_dino_folder() {
    // Loading the wrong kind of model fails with the file and key, not a panic.
    let message = format!("{:#}", Dino::load(&fixtures().join("clip-tiny"), &Device::Cpu).err().expect("an error"));
    assert!(message.contains("model.safetensors"), "{message}");
}
