//! The name translation and config inference against hand-written cases.

use std::collections::HashMap;

use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::VarBuilder;

use super::*;
use crate::model::clip::ClipTextModel;
use crate::model::weights::{WeightFiles, WeightSource};

#[test]
fn unet_names_follow_the_block_index_rules() {
    let cases = [
        ("input_blocks.0.0.weight", "conv_in.weight"),
        ("time_embed.2.bias", "time_embedding.linear_2.bias"),
        ("label_emb.0.0.weight", "add_embedding.linear_1.weight"),
        ("input_blocks.1.0.in_layers.0.weight", "down_blocks.0.resnets.0.norm1.weight"),
        ("input_blocks.3.0.op.weight", "down_blocks.0.downsamplers.0.conv.weight"),
        (
            "input_blocks.4.1.transformer_blocks.3.attn1.to_q.weight",
            "down_blocks.1.attentions.0.transformer_blocks.3.attn1.to_q.weight",
        ),
        ("input_blocks.8.0.skip_connection.bias", "down_blocks.2.resnets.1.conv_shortcut.bias"),
        ("middle_block.1.proj_in.weight", "mid_block.attentions.0.proj_in.weight"),
        ("middle_block.2.out_layers.3.bias", "mid_block.resnets.1.conv2.bias"),
        ("output_blocks.2.1.conv.weight", "up_blocks.0.upsamplers.0.conv.weight"),
        ("output_blocks.5.2.conv.bias", "up_blocks.1.upsamplers.0.conv.bias"),
        ("output_blocks.5.0.emb_layers.1.weight", "up_blocks.1.resnets.2.time_emb_proj.weight"),
        ("output_blocks.7.1.norm.weight", "up_blocks.2.attentions.1.norm.weight"),
        ("out.0.weight", "conv_norm_out.weight"),
        ("out.2.bias", "conv_out.bias"),
    ];
    for (ldm, diffusers) in cases {
        assert_eq!(unet_name(ldm, 2).as_deref(), Some(diffusers), "{ldm}");
    }
    // The SGM module names kohya writes for SDXL invert the mapping.
    for module in [
        "down_blocks.1.attentions.1.transformer_blocks.0.attn2.to_k",
        "mid_block.attentions.0.proj_out",
        "up_blocks.0.attentions.2.transformer_blocks.9.ff.net.2",
    ] {
        let ldm = unet_ldm_module(module, 2).unwrap();
        assert_eq!(unet_name(&format!("{ldm}.weight"), 2).unwrap(), format!("{module}.weight"), "{module} → {ldm}");
    }
}

#[test]
fn vae_names_reverse_the_decoder_levels() {
    let cases = [
        ("encoder.down.1.block.0.nin_shortcut.weight", "encoder.down_blocks.1.resnets.0.conv_shortcut.weight"),
        ("encoder.down.2.downsample.conv.bias", "encoder.down_blocks.2.downsamplers.0.conv.bias"),
        ("decoder.up.0.block.2.conv1.weight", "decoder.up_blocks.3.resnets.2.conv1.weight"),
        ("decoder.up.3.upsample.conv.weight", "decoder.up_blocks.0.upsamplers.0.conv.weight"),
        ("encoder.mid.attn_1.proj_out.weight", "encoder.mid_block.attentions.0.to_out.0.weight"),
        ("decoder.mid.attn_1.norm.bias", "decoder.mid_block.attentions.0.group_norm.bias"),
        ("decoder.mid.block_2.norm2.weight", "decoder.mid_block.resnets.1.norm2.weight"),
        ("encoder.norm_out.weight", "encoder.conv_norm_out.weight"),
        ("quant_conv.weight", "quant_conv.weight"),
    ];
    for (ldm, diffusers) in cases {
        assert_eq!(vae_name(ldm, 4), diffusers, "{ldm}");
    }
}

/// An OpenCLIP encoder read through the name translation equals the same
/// weights split and transposed by hand into Hugging Face names.
#[test]
fn open_clip_text_encoders_translate_to_hugging_face_clip() {
    let (d, layers) = (8usize, 3usize);
    let randn = |shape: &[usize]| Tensor::randn(0f32, 0.3, shape, &Device::Cpu).unwrap();
    let prefix = SDXL_TEXT2_PREFIX;
    let mut open_clip = HashMap::new();
    let mut hf = HashMap::new();
    let mut put = |ldm: String, hf_name: Option<String>, tensor: Tensor| {
        if let Some(name) = hf_name {
            hf.insert(name, tensor.clone());
        }
        open_clip.insert(format!("{prefix}{ldm}"), tensor);
    };
    put("token_embedding.weight".into(), Some("text_model.embeddings.token_embedding.weight".into()), randn(&[100, d]));
    put("positional_embedding".into(), Some("text_model.embeddings.position_embedding.weight".into()), randn(&[77, d]));
    for part in ["weight", "bias"] {
        put(format!("ln_final.{part}"), Some(format!("text_model.final_layer_norm.{part}")), randn(&[d]));
    }
    let mut splits = Vec::new();
    let projection = randn(&[d, 6]);
    put("text_projection".into(), None, projection.clone());
    for n in 0..layers {
        let layer = |name: &str| format!("text_model.encoder.layers.{n}.{name}");
        for part in ["weight", "bias"] {
            let shape = |rows: usize, cols: usize| if part == "weight" { vec![rows, cols] } else { vec![rows] };
            for (ldm, hf_name, rows, cols) in [
                ("ln_1", "layer_norm1", d, 0),
                ("ln_2", "layer_norm2", d, 0),
                ("attn.out_proj", "self_attn.out_proj", d, d),
                ("mlp.c_fc", "mlp.fc1", 4 * d, d),
                ("mlp.c_proj", "mlp.fc2", d, 4 * d),
            ] {
                let dims = if cols == 0 { vec![rows] } else { shape(rows, cols) };
                put(
                    format!("transformer.resblocks.{n}.{ldm}.{part}"),
                    Some(layer(&format!("{hf_name}.{part}"))),
                    randn(&dims),
                );
            }
            let fused = randn(&shape(3 * d, d));
            for (i, name) in ["q_proj", "k_proj", "v_proj"].iter().enumerate() {
                splits.push((
                    layer(&format!("self_attn.{name}.{part}")),
                    fused.i(i * d..(i + 1) * d).unwrap().contiguous().unwrap(),
                ));
            }
            put(format!("transformer.resblocks.{n}.attn.in_proj_{part}"), None, fused);
        }
    }
    hf.extend(splits);
    hf.insert("text_projection.weight".into(), projection.t().unwrap().contiguous().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("openclip.safetensors");
    candle_core::safetensors::save(&open_clip, &path).unwrap();
    let shapes: HashMap<String, Vec<usize>> = open_clip.iter().map(|(k, v)| (k.clone(), v.dims().to_vec())).collect();

    let (mut config, names) = open_clip_text(&shapes, prefix, false).unwrap();
    assert_eq!((config.hidden_size, config.num_hidden_layers, config.vocab_size), (d, layers, 100));
    config.num_attention_heads = 2;
    let files = WeightFiles::open(&[path]).unwrap();
    let translated = ClipTextModel::load(
        WeightSource::translated(files, names, prefix).var_builder(DType::F32, &Device::Cpu),
        &config,
    )
    .unwrap();
    let by_hand = ClipTextModel::load(VarBuilder::from_tensors(hf, DType::F32, &Device::Cpu), &config).unwrap();
    let ids = Tensor::new(&[[49u32, 7, 99, 3, 0, 0]], &Device::Cpu).unwrap();
    let (a, b) = (translated.forward(&ids).unwrap(), by_hand.forward(&ids).unwrap());
    let diff = |x: &Tensor, y: &Tensor| (x - y).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert_eq!(diff(&a.last_hidden_state, &b.last_hidden_state), 0.0);
    assert_eq!(diff(&a.pooled, &b.pooled), 0.0);
    assert_eq!(a.pooled.dims(), &[1, 6], "pooled output goes through the projection");

    // SD2 drops the last layer and the projection.
    let (sd2, names) = open_clip_text(&shapes, prefix, true).unwrap();
    assert_eq!(sd2.num_hidden_layers, layers - 1);
    assert!(!names.contains_key("text_projection.weight"));
}

#[test]
fn the_size_embedding_width_follows_from_the_add_embedding_and_the_pooled_width() {
    let projection = format!("{SDXL_TEXT2_PREFIX}text_projection");
    let shapes = |pooled: usize| HashMap::from([(projection.clone(), vec![1280, pooled])]);
    assert_eq!(size_embedding_width(&shapes(1280), 2816).unwrap(), (256, 2816), "SDXL itself");
    assert_eq!(size_embedding_width(&shapes(32), 80).unwrap(), (8, 80));
    let error = size_embedding_width(&shapes(32), 81).unwrap_err().to_string();
    assert!(error.contains("label_emb.0.0.weight") && error.contains("81") && error.contains("32"), "{error}");
    let error = size_embedding_width(&HashMap::new(), 80).unwrap_err().to_string();
    assert!(error.contains("text_projection"), "{error}");
}

#[test]
fn families_are_told_apart_by_their_text_encoder_keys() {
    let with = |keys: &[&str]| keys.iter().map(|k| (k.to_string(), vec![1])).collect::<HashMap<_, _>>();
    let unet = "model.diffusion_model.input_blocks.0.0.weight";
    assert_eq!(
        detect_family(&with(&[unet, "cond_stage_model.transformer.text_model.final_layer_norm.weight"])).unwrap(),
        Family::Sd1
    );
    assert_eq!(detect_family(&with(&[unet, "cond_stage_model.model.ln_final.weight"])).unwrap(), Family::Sd2);
    assert_eq!(detect_family(&with(&[unet, "conditioner.embedders.1.model.ln_final.weight"])).unwrap(), Family::Sdxl);
    assert!(
        detect_family(&with(&["lora_unet_x.lora_down.weight"]))
            .unwrap_err()
            .to_string()
            .contains("not a Stable Diffusion checkpoint")
    );
}
