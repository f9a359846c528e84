//! The CLIP tokenizer against the ids diffusers fed its text encoder.

use common::{fixture, refs};
use easel::model::tokenizer::{ClipTokenizer, Padding};

mod common;

#[test]
fn the_fixture_prompts_tokenize_as_in_diffusers() {
    let expected = refs()["te_input_ids"].to_vec2::<i64>().unwrap();
    let from_folder = ClipTokenizer::from_folder(&fixture("diffusers/tokenizer"), Padding::EndOfText).unwrap();
    let shipped = ClipTokenizer::shipped(Padding::EndOfText);
    for (row, text) in expected.iter().zip(["a photo of a cat, wearing a red hat", "blurry, low quality"]) {
        let row: Vec<u32> = row.iter().map(|&id| id as u32).collect();
        assert_eq!(from_folder.encode(text), row, "{text}");
        assert_eq!(shipped.encode(text), row, "{text}");
    }
}

#[test]
fn a_folder_without_tokenizer_files_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let error = ClipTokenizer::from_folder(dir.path(), Padding::EndOfText).unwrap_err().to_string();
    assert!(error.contains("tokenizer.json"), "{error}");
}
