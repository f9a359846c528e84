//! The CLIP text encoder against diffusers' outputs (atol 1e-5, as the
//! fixtures README suggests), from the diffusers folder and the single file.

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use common::{fixture, max_abs_diff, refs};
use easel::model::clip::{ClipTextConfig, ClipTextModel};

mod common;

fn check(vb: VarBuilder) {
    let refs = refs();
    let config = ClipTextConfig::from_file(&fixture("diffusers/text_encoder/config.json")).unwrap();
    let model = ClipTextModel::load(vb, &config).unwrap();
    let ids = refs["te_input_ids"].to_dtype(DType::U32).unwrap();
    let encoding = model.forward(&ids).unwrap();
    let last = max_abs_diff(&encoding.last_hidden_state, &refs["te_last_hidden_state"]);
    let penultimate = max_abs_diff(&encoding.penultimate, &refs["te_penultimate_hidden_state"]);
    eprintln!("text encoder max |Δ|: last hidden state {last:e}, penultimate {penultimate:e}");
    assert!(last < 1e-5, "last hidden state max |Δ| = {last}");
    assert!(penultimate < 1e-5, "penultimate max |Δ| = {penultimate}");
}

fn weights(file: &str) -> VarBuilder<'static> {
    // The fixture stores f16; upcasting gives exactly the weights diffusers used.
    unsafe { VarBuilder::from_mmaped_safetensors(&[fixture(file)], DType::F32, &Device::Cpu).unwrap() }
}

#[test]
fn matches_diffusers_from_the_diffusers_folder() {
    check(weights("diffusers/text_encoder/model.safetensors"));
}

#[test]
fn matches_diffusers_from_the_single_file_checkpoint() {
    check(weights("tiny-sd15.single_file.safetensors").pp("cond_stage_model.transformer"));
}
