//! Writes a diffusers-folder SDXL model as one single file in the original
//! SGM layout (`model.diffusion_model.*`, `first_stage_model.*`,
//! `conditioner.embedders.{0,1}.*`), the way original checkpoints store it.
//! This is the tests' own spelling of the layout, written apart from the
//! loader's translation tables, so a mistake there cannot cancel out here.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};

fn load(path: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(path, &Device::Cpu).unwrap()
}

fn config(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `text` with the first matching (from, to) prefix replaced.
fn renamed(text: &str, table: &[(&str, &str)]) -> Option<String> {
    table.iter().find_map(|(from, to)| text.strip_prefix(from).map(|tail| format!("{to}{tail}")))
}

fn resnet(rest: &str) -> String {
    let table = [
        ("norm1", "in_layers.0"),
        ("conv1", "in_layers.2"),
        ("time_emb_proj", "emb_layers.1"),
        ("norm2", "out_layers.0"),
        ("conv2", "out_layers.3"),
        ("conv_shortcut", "skip_connection"),
    ];
    renamed(rest, &table).unwrap_or_else(|| panic!("unexpected resnet tensor {rest}"))
}

/// `(kind, i, inner, j, rest)` from `down_blocks.1.resnets.0.conv1.weight`.
fn block(name: &str) -> Option<(&str, usize, &str, usize, &str)> {
    let mut parts = name.splitn(5, '.');
    let kind = parts.next()?;
    let i = parts.next()?.parse().ok()?;
    let inner = parts.next()?;
    let j = parts.next()?.parse().ok()?;
    Some((kind, i, inner, j, parts.next()?))
}

fn unet_key(name: &str, layers: usize, up_attention: &[bool]) -> String {
    let fixed = [
        ("time_embedding.linear_1.", "time_embed.0."),
        ("time_embedding.linear_2.", "time_embed.2."),
        ("add_embedding.linear_1.", "label_emb.0.0."),
        ("add_embedding.linear_2.", "label_emb.0.2."),
        ("conv_in.", "input_blocks.0.0."),
        ("conv_norm_out.", "out.0."),
        ("conv_out.", "out.2."),
        ("mid_block.attentions.0.", "middle_block.1."),
    ];
    if let Some(key) = renamed(name, &fixed) {
        return key;
    }
    if let Some((j, rest)) = name.strip_prefix("mid_block.resnets.").and_then(|r| r.split_once('.')) {
        return format!("middle_block.{}.{}", if j == "0" { 0 } else { 2 }, resnet(rest));
    }
    let per_level = layers + 1;
    match block(name).unwrap_or_else(|| panic!("unexpected UNet tensor {name}")) {
        ("down_blocks", i, "resnets", j, rest) => format!("input_blocks.{}.0.{}", i * per_level + j + 1, resnet(rest)),
        ("down_blocks", i, "attentions", j, rest) => format!("input_blocks.{}.1.{rest}", i * per_level + j + 1),
        ("down_blocks", i, "downsamplers", 0, rest) => {
            format!("input_blocks.{}.0.op.{}", (i + 1) * per_level, rest.strip_prefix("conv.").unwrap())
        }
        ("up_blocks", i, "resnets", j, rest) => format!("output_blocks.{}.0.{}", i * per_level + j, resnet(rest)),
        ("up_blocks", i, "attentions", j, rest) => format!("output_blocks.{}.1.{rest}", i * per_level + j),
        ("up_blocks", i, "upsamplers", 0, rest) => {
            let slot = if up_attention[i] { 2 } else { 1 };
            format!("output_blocks.{}.{slot}.{rest}", i * per_level + layers)
        }
        _ => panic!("unexpected UNet tensor {name}"),
    }
}

fn vae_key(name: &str, levels: usize) -> String {
    let (side, rest) = name.split_once('.').unwrap();
    let rest = rest.replace("conv_shortcut", "nin_shortcut");
    let inner = if let Some((_, n, inner, j, tail)) = block(&rest).filter(|b| b.0 == "down_blocks") {
        match inner {
            "resnets" => format!("down.{n}.block.{j}.{tail}"),
            _ => format!("down.{n}.downsample.{tail}"),
        }
    } else if let Some((_, n, inner, j, tail)) = block(&rest).filter(|b| b.0 == "up_blocks") {
        let n = levels - 1 - n;
        match inner {
            "resnets" => format!("up.{n}.block.{j}.{tail}"),
            _ => format!("up.{n}.upsample.{tail}"),
        }
    } else {
        let table = [
            ("mid_block.resnets.0.", "mid.block_1."),
            ("mid_block.resnets.1.", "mid.block_2."),
            ("mid_block.attentions.0.group_norm.", "mid.attn_1.norm."),
            ("mid_block.attentions.0.to_q.", "mid.attn_1.q."),
            ("mid_block.attentions.0.to_k.", "mid.attn_1.k."),
            ("mid_block.attentions.0.to_v.", "mid.attn_1.v."),
            ("mid_block.attentions.0.to_out.0.", "mid.attn_1.proj_out."),
            ("conv_norm_out.", "norm_out."),
        ];
        renamed(&rest, &table).unwrap_or(rest)
    };
    format!("first_stage_model.{side}.{inner}")
}

/// The second text encoder in OpenCLIP names: fused q/k/v, the projection transposed.
fn open_clip(tensors: &HashMap<String, Tensor>, out: &mut HashMap<String, Tensor>) {
    const PREFIX: &str = "conditioner.embedders.1.model.";
    let get = |name: &str| {
        tensors
            .get(name)
            .or_else(|| tensors.get(name.strip_prefix("text_model.").unwrap_or(name)))
            .unwrap_or_else(|| panic!("no {name} in text_encoder_2"))
            .clone()
    };
    out.insert(format!("{PREFIX}token_embedding.weight"), get("text_model.embeddings.token_embedding.weight"));
    out.insert(format!("{PREFIX}positional_embedding"), get("text_model.embeddings.position_embedding.weight"));
    out.insert(format!("{PREFIX}text_projection"), get("text_projection.weight").t().unwrap().contiguous().unwrap());
    let layers = tensors.keys().filter(|k| k.contains("layers.") && k.ends_with("layer_norm1.weight")).count();
    for part in ["weight", "bias"] {
        out.insert(format!("{PREFIX}ln_final.{part}"), get(&format!("text_model.final_layer_norm.{part}")));
        for n in 0..layers {
            let from = |hf: &str| get(&format!("text_model.encoder.layers.{n}.{hf}.{part}"));
            let to = |ldm: &str| format!("{PREFIX}transformer.resblocks.{n}.{ldm}.{part}");
            for (hf, ldm) in [
                ("layer_norm1", "ln_1"),
                ("layer_norm2", "ln_2"),
                ("self_attn.out_proj", "attn.out_proj"),
                ("mlp.fc1", "mlp.c_fc"),
                ("mlp.fc2", "mlp.c_proj"),
            ] {
                out.insert(to(ldm), from(hf));
            }
            let qkv = ["q_proj", "k_proj", "v_proj"].map(|p| from(&format!("self_attn.{p}")));
            out.insert(format!("{PREFIX}transformer.resblocks.{n}.attn.in_proj_{part}"), Tensor::cat(&qkv, 0).unwrap());
        }
    }
}

/// Writes the SDXL diffusers folder `folder` as the single file `out`.
pub fn write_sdxl_single_file(folder: &Path, out: &Path) {
    let unet_config = config(&folder.join("unet/config.json"));
    let layers = unet_config["layers_per_block"].as_u64().unwrap() as usize;
    let up_attention: Vec<bool> = unet_config["up_block_types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kind| kind.as_str().unwrap().starts_with("CrossAttn"))
        .collect();
    let levels = config(&folder.join("vae/config.json"))["block_out_channels"].as_array().unwrap().len();
    let mut tensors = HashMap::new();
    for (name, tensor) in load(&folder.join("unet/diffusion_pytorch_model.safetensors")) {
        tensors.insert(format!("model.diffusion_model.{}", unet_key(&name, layers, &up_attention)), tensor);
    }
    for (name, tensor) in load(&folder.join("vae/diffusion_pytorch_model.safetensors")) {
        // Original VAEs store the mid attention's projections as 1×1 convolutions.
        let tensor = if name.contains("mid_block.attentions.0.to_") && name.ends_with("weight") {
            let (o, i) = tensor.dims2().unwrap();
            tensor.reshape((o, i, 1, 1)).unwrap()
        } else {
            tensor
        };
        tensors.insert(vae_key(&name, levels), tensor);
    }
    for (name, tensor) in load(&folder.join("text_encoder/model.safetensors")) {
        if name.ends_with("position_ids") {
            continue;
        }
        let name = if name.starts_with("text_model.") { name } else { format!("text_model.{name}") };
        tensors.insert(format!("conditioner.embedders.0.transformer.{name}"), tensor);
    }
    open_clip(&load(&folder.join("text_encoder_2/model.safetensors")), &mut tensors);
    candle_core::safetensors::save(&tensors, out).unwrap();
}
