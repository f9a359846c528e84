//! Original (LDM / SGM) single-file checkpoints: translating their tensor
//! names to the diffusers names the module code uses, and inferring the
//! family and the configs from tensor shapes. The tables are in
//! docs/formats/single-file-checkpoints.md.

use std::collections::{BTreeSet, HashMap};

use anyhow::{Result, anyhow};

use super::Family;
use super::clip::{Activation, ClipTextConfig};
use super::unet::{PerBlock, UNetConfig};
use super::vae::VaeConfig;
use super::weights::Stored;

pub const UNET_PREFIX: &str = "model.diffusion_model.";
pub const VAE_PREFIX: &str = "first_stage_model.";
const SD1_TEXT_PREFIX: &str = "cond_stage_model.transformer.";
const SD2_TEXT_PREFIX: &str = "cond_stage_model.model.";
const SDXL_TEXT_PREFIX: &str = "conditioner.embedders.0.transformer.";
const SDXL_TEXT2_PREFIX: &str = "conditioner.embedders.1.model.";

/// Which family a checkpoint's keys say it is.
pub fn detect_family(shapes: &HashMap<String, Vec<usize>>) -> Result<Family> {
    let has_prefix = |prefix: &str| shapes.keys().any(|key| key.starts_with(prefix));
    if !has_prefix(UNET_PREFIX) {
        return Err(anyhow!(
            "no `{UNET_PREFIX}*` tensors: this is not a Stable Diffusion checkpoint (a LoRA or a VAE alone?)"
        ));
    }
    if has_prefix(SDXL_TEXT2_PREFIX) {
        Ok(Family::Sdxl)
    } else if has_prefix(SD2_TEXT_PREFIX) {
        Ok(Family::Sd2)
    } else if has_prefix(SD1_TEXT_PREFIX) {
        Ok(Family::Sd1)
    } else if has_prefix("conditioner.embedders.0.model.") {
        Err(anyhow!("this is an SDXL refiner, which has no place in LoRA training"))
    } else {
        Err(anyhow!("the checkpoint has no text encoder (`cond_stage_model.*` or `conditioner.embedders.*`)"))
    }
}

/// A component's translated names: model name → how it is stored.
pub type NameMap = HashMap<String, Stored>;

/// A residual block's layers: (LDM, diffusers).
pub const RESNET_RENAMES: [(&str, &str); 6] = [
    ("in_layers.0", "norm1"),
    ("in_layers.2", "conv1"),
    ("emb_layers.1", "time_emb_proj"),
    ("out_layers.0", "norm2"),
    ("out_layers.3", "conv2"),
    ("skip_connection", "conv_shortcut"),
];

/// UNet layers outside the numbered blocks: (LDM, diffusers).
pub const UNET_FIXED: [(&str, &str); 7] = [
    ("time_embed.0.", "time_embedding.linear_1."),
    ("time_embed.2.", "time_embedding.linear_2."),
    ("label_emb.0.0.", "add_embedding.linear_1."),
    ("label_emb.0.2.", "add_embedding.linear_2."),
    ("input_blocks.0.0.", "conv_in."),
    ("out.0.", "conv_norm_out."),
    ("out.2.", "conv_out."),
];

/// The VAE's middle block, after `mid.` / `mid_block.`: (LDM, diffusers).
pub const VAE_MID_RENAMES: [(&str, &str); 7] = [
    ("block_1.", "resnets.0."),
    ("block_2.", "resnets.1."),
    ("attn_1.norm.", "attentions.0.group_norm."),
    ("attn_1.q.", "attentions.0.to_q."),
    ("attn_1.k.", "attentions.0.to_k."),
    ("attn_1.v.", "attentions.0.to_v."),
    ("attn_1.proj_out.", "attentions.0.to_out.0."),
];

/// An OpenCLIP residual block's layers with weight and bias (the fused
/// attention input aside): (OpenCLIP, Hugging Face CLIP).
pub const OPEN_CLIP_LAYER_RENAMES: [(&str, &str); 5] = [
    ("ln_1", "layer_norm1"),
    ("ln_2", "layer_norm2"),
    ("attn.out_proj", "self_attn.out_proj"),
    ("mlp.c_fc", "mlp.fc1"),
    ("mlp.c_proj", "mlp.fc2"),
];

fn resnet_part(rest: &str) -> String {
    for (ldm, diffusers) in RESNET_RENAMES {
        if let Some(tail) = rest.strip_prefix(ldm) {
            return format!("{diffusers}{tail}");
        }
    }
    rest.to_string()
}

/// Splits `"12.1.rest"` into (12, 1, "rest").
fn block_address(path: &str) -> Option<(usize, usize, &str)> {
    let mut parts = path.splitn(3, '.');
    let n = parts.next()?.parse().ok()?;
    let k = parts.next()?.parse().ok()?;
    Some((n, k, parts.next()?))
}

/// The diffusers name of one UNet tensor (without `model.diffusion_model.`),
/// for `layers` residual blocks per down level.
pub fn unet_name(ldm: &str, layers: usize) -> Option<String> {
    for (from, to) in UNET_FIXED {
        if let Some(tail) = ldm.strip_prefix(from) {
            return Some(format!("{to}{tail}"));
        }
    }
    let per_level = layers + 1;
    if let Some((n, k, rest)) = ldm.strip_prefix("input_blocks.").and_then(block_address) {
        let (i, j) = ((n - 1) / per_level, (n - 1) % per_level);
        return Some(match (k, rest.strip_prefix("op.")) {
            (0, Some(tail)) => format!("down_blocks.{i}.downsamplers.0.conv.{tail}"),
            (0, None) => format!("down_blocks.{i}.resnets.{j}.{}", resnet_part(rest)),
            _ => format!("down_blocks.{i}.attentions.{j}.{rest}"),
        });
    }
    if let Some(rest) = ldm.strip_prefix("middle_block.") {
        let (k, rest) = rest.split_once('.')?;
        return Some(match k {
            "0" => format!("mid_block.resnets.0.{}", resnet_part(rest)),
            "1" => format!("mid_block.attentions.0.{rest}"),
            _ => format!("mid_block.resnets.1.{}", resnet_part(rest)),
        });
    }
    if let Some((n, k, rest)) = ldm.strip_prefix("output_blocks.").and_then(block_address) {
        let (i, j) = (n / per_level, n % per_level);
        return Some(match k {
            0 => format!("up_blocks.{i}.resnets.{j}.{}", resnet_part(rest)),
            _ if rest.starts_with("conv.") => format!("up_blocks.{i}.upsamplers.0.{rest}"),
            _ => format!("up_blocks.{i}.attentions.{j}.{rest}"),
        });
    }
    None
}

/// The reverse of [`unet_name`] for the module paths of spatial
/// transformers: the SGM name kohya uses in SDXL LoRA keys.
pub fn unet_ldm_module(diffusers: &str, layers: usize) -> Option<String> {
    if let Some(rest) = diffusers.strip_prefix("mid_block.attentions.0.") {
        return Some(format!("middle_block.1.{rest}"));
    }
    let per_level = layers + 1;
    let mut parts = diffusers.splitn(5, '.');
    let (kind, i, inner, j, rest) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let (i, j): (usize, usize) = (i.parse().ok()?, j.parse().ok()?);
    match (kind, inner) {
        ("down_blocks", "attentions") => Some(format!("input_blocks.{}.1.{rest}", i * per_level + j + 1)),
        ("up_blocks", "attentions") => Some(format!("output_blocks.{}.1.{rest}", i * per_level + j)),
        _ => None,
    }
}

fn count_indices(shapes: &HashMap<String, Vec<usize>>, prefix: &str) -> usize {
    shapes
        .keys()
        .filter_map(|key| key.strip_prefix(prefix)?.split('.').next()?.parse::<usize>().ok())
        .collect::<BTreeSet<_>>()
        .len()
}

/// The UNet's names and config. Heads are not stored in the weights: they
/// follow each family's published configs (SD1: 8 heads; SD2, SDXL: 64-wide).
pub fn unet(shapes: &HashMap<String, Vec<usize>>, family: Family) -> Result<(UNetConfig, NameMap)> {
    let shape = |key: &str| {
        shapes.get(&format!("{UNET_PREFIX}{key}")).ok_or_else(|| anyhow!("missing tensor `{UNET_PREFIX}{key}`"))
    };
    // The first downsampler sits right after the first level's resnets.
    let layers = (1..20)
        .find(|n| shapes.contains_key(&format!("{UNET_PREFIX}input_blocks.{n}.0.op.weight")))
        .map(|n| n - 1)
        .ok_or_else(|| anyhow!("no downsampler (`input_blocks.N.0.op.weight`) found"))?;
    let mut names = NameMap::new();
    for key in shapes.keys() {
        if let Some(ldm) = key.strip_prefix(UNET_PREFIX)
            && let Some(name) = unet_name(ldm, layers)
        {
            names.insert(name, Stored::Renamed(key.clone()));
        }
    }
    let translated: HashMap<&str, &Vec<usize>> = names
        .iter()
        .filter_map(|(name, stored)| {
            Some((
                name.as_str(),
                shapes.get(match stored {
                    Stored::Renamed(k) => k,
                    _ => return None,
                })?,
            ))
        })
        .collect();
    let levels = (0..10)
        .take_while(|i| translated.contains_key(format!("down_blocks.{i}.resnets.0.conv1.weight").as_str()))
        .count();
    if levels == 0 {
        return Err(anyhow!("no UNet down blocks found"));
    }
    let channels: Vec<usize> =
        (0..levels).map(|i| translated[format!("down_blocks.{i}.resnets.0.conv1.weight").as_str()][0]).collect();
    let has_attention =
        |kind: &str, i: usize| translated.keys().any(|name| name.starts_with(&format!("{kind}.{i}.attentions.")));
    let depth = |prefix: String| {
        (0..64)
            .take_while(|k| translated.contains_key(format!("{prefix}.transformer_blocks.{k}.norm1.weight").as_str()))
            .count()
            .max(1)
    };
    let conv_in = shape("input_blocks.0.0.weight")?;
    let conv_out = shape("out.2.weight")?;
    let cross_attention_dim = translated
        .iter()
        .find(|(name, _)| name.ends_with("attn2.to_k.weight"))
        .map(|(_, shape)| shape[1])
        .ok_or_else(|| anyhow!("no cross-attention (`attn2.to_k`) in the UNet"))?;
    let linear_projection =
        translated.iter().find(|(name, _)| name.ends_with("proj_in.weight")).is_some_and(|(_, shape)| shape.len() == 2);
    let heads: Vec<usize> = channels.iter().map(|&c| if family == Family::Sd1 { 8 } else { (c / 64).max(1) }).collect();
    let sdxl = family == Family::Sdxl;
    let (addition_time_embed_dim, projection_class_embeddings_input_dim) = if sdxl {
        let (time, input) = size_embedding_width(shapes, shape("label_emb.0.0.weight")?[1])?;
        (Some(time), Some(input))
    } else {
        (None, None)
    };
    let config = UNetConfig {
        in_channels: conv_in[1],
        out_channels: conv_out[0],
        block_out_channels: channels.clone(),
        down_block_types: (0..levels)
            .map(|i| if has_attention("down_blocks", i) { "CrossAttnDownBlock2D" } else { "DownBlock2D" }.into())
            .collect(),
        up_block_types: (0..levels)
            .map(|i| if has_attention("up_blocks", i) { "CrossAttnUpBlock2D" } else { "UpBlock2D" }.into())
            .collect(),
        layers_per_block: layers,
        attention_head_dim: PerBlock::Each(heads),
        num_attention_heads: None,
        cross_attention_dim,
        transformer_layers_per_block: PerBlock::Each(
            (0..levels).map(|i| depth(format!("down_blocks.{i}.attentions.0"))).collect(),
        ),
        reverse_transformer_layers_per_block: None,
        use_linear_projection: linear_projection,
        norm_num_groups: 32,
        norm_eps: 1e-5,
        flip_sin_to_cos: true,
        freq_shift: 0.0,
        addition_embed_type: sdxl.then(|| "text_time".into()),
        addition_time_embed_dim,
        projection_class_embeddings_input_dim,
        sample_size: family.default_resolution() / 8,
        class_embed_type: None,
        mid_block_type: Some("UNetMidBlock2DCrossAttn".into()),
        time_cond_proj_dim: None,
        resnet_time_scale_shift: None,
        only_cross_attention: None,
        time_embedding_type: None,
        conv_in_kernel: None,
        conv_out_kernel: None,
    };
    Ok((config, names))
}

/// SDXL's add embedding takes the pooled text (as wide as the second
/// encoder's projection) and six size ids, each embedded equally wide (256
/// in SDXL itself): from the add embedding's `input` width, that width, and
/// `input` back, as (addition_time_embed_dim, projection_class_embeddings_input_dim).
fn size_embedding_width(shapes: &HashMap<String, Vec<usize>>, input: usize) -> Result<(usize, usize)> {
    let projection = format!("{SDXL_TEXT2_PREFIX}text_projection");
    let pooled = shapes.get(&projection).and_then(|shape| shape.get(1)).copied().ok_or_else(|| {
        anyhow!("missing tensor `{projection}` (the pooled text width the UNet's add embedding is built for)")
    })?;
    match input.checked_sub(pooled) {
        Some(rest) if rest > 0 && rest % 6 == 0 => Ok((rest / 6, input)),
        _ => Err(anyhow!(
            "`{UNET_PREFIX}label_emb.0.0.weight` takes {input} inputs, which is not the pooled text width {pooled} \
             (`{projection}`) plus six equal size embeddings"
        )),
    }
}

/// The diffusers name of one VAE tensor (without `first_stage_model.`).
pub fn vae_name(ldm: &str, levels: usize) -> String {
    let (side, rest) = ldm.split_once('.').unwrap_or((ldm, ""));
    let rest = rest.replace("nin_shortcut", "conv_shortcut");
    let renamed = if let Some(tail) = rest.strip_prefix("down.") {
        let (n, tail) = tail.split_once('.').unwrap_or((tail, ""));
        let tail = tail.replacen("block.", "resnets.", 1).replacen("downsample.", "downsamplers.0.", 1);
        format!("down_blocks.{n}.{tail}")
    } else if let Some(tail) = rest.strip_prefix("up.") {
        let (n, tail) = tail.split_once('.').unwrap_or((tail, ""));
        let n = levels.saturating_sub(1 + n.parse::<usize>().unwrap_or(0));
        let tail = tail.replacen("block.", "resnets.", 1).replacen("upsample.", "upsamplers.0.", 1);
        format!("up_blocks.{n}.{tail}")
    } else if let Some(tail) = rest.strip_prefix("mid.") {
        let tail = VAE_MID_RENAMES
            .iter()
            .find_map(|(ldm, diffusers)| tail.strip_prefix(ldm).map(|rest| format!("{diffusers}{rest}")))
            .unwrap_or_else(|| tail.to_string());
        format!("mid_block.{tail}")
    } else if let Some(tail) = rest.strip_prefix("norm_out.") {
        format!("conv_norm_out.{tail}")
    } else {
        rest
    };
    if renamed.is_empty() { side.to_string() } else { format!("{side}.{renamed}") }
}

pub fn vae(shapes: &HashMap<String, Vec<usize>>, family: Family) -> Result<(VaeConfig, NameMap)> {
    let key = |k: &str| format!("{VAE_PREFIX}{k}");
    let levels = count_indices(shapes, &key("encoder.down."));
    if levels == 0 {
        return Err(anyhow!("no VAE (`{VAE_PREFIX}encoder.down.*`) in the checkpoint"));
    }
    let channels = (0..levels)
        .map(|n| {
            shapes
                .get(&key(&format!("encoder.down.{n}.block.0.conv1.weight")))
                .map(|s| s[0])
                .ok_or_else(|| anyhow!("missing `{}`", key(&format!("encoder.down.{n}.block.0.conv1.weight"))))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let latent = shapes
        .get(&key("decoder.conv_in.weight"))
        .map(|s| s[1])
        .ok_or_else(|| anyhow!("missing `{}`", key("decoder.conv_in.weight")))?;
    let names = shapes
        .keys()
        .filter_map(|k| Some((vae_name(k.strip_prefix(VAE_PREFIX)?, levels), Stored::Renamed(k.clone()))))
        .collect();
    let config = VaeConfig {
        in_channels: 3,
        out_channels: 3,
        block_out_channels: channels,
        layers_per_block: count_indices(shapes, &key("encoder.down.0.block.")),
        latent_channels: latent,
        norm_num_groups: 32,
        scaling_factor: if family == Family::Sdxl { 0.13025 } else { 0.18215 },
        use_quant_conv: shapes.contains_key(&key("quant_conv.weight")),
        use_post_quant_conv: shapes.contains_key(&key("post_quant_conv.weight")),
        mid_block_add_attention: shapes.contains_key(&key("encoder.mid.attn_1.q.weight")),
        force_upcast: true,
    };
    Ok((config, names))
}

/// A text encoder already in Hugging Face CLIP names (SD1, SDXL's first).
pub fn clip_text(shapes: &HashMap<String, Vec<usize>>, prefix: &str) -> Result<(ClipTextConfig, NameMap)> {
    let mut names = NameMap::new();
    for key in shapes.keys() {
        let Some(name) = key.strip_prefix(prefix) else { continue };
        if name.ends_with("position_ids") {
            continue;
        }
        // Some old SD1 files lack the `text_model.` segment.
        let name = if name.starts_with("text_model.") { name.to_string() } else { format!("text_model.{name}") };
        names.insert(name, Stored::Renamed(key.clone()));
    }
    let shape = |name: &str| match names.get(name) {
        Some(Stored::Renamed(key)) => Ok(shapes[key].clone()),
        _ => Err(anyhow!("missing tensor `{prefix}{name}`")),
    };
    let embedding = shape("text_model.embeddings.token_embedding.weight")?;
    let hidden = embedding[1];
    let config = ClipTextConfig {
        vocab_size: embedding[0],
        hidden_size: hidden,
        intermediate_size: shape("text_model.encoder.layers.0.mlp.fc1.weight")?[0],
        num_hidden_layers: count_indices(shapes, &format!("{prefix}text_model.encoder.layers."))
            .max(count_indices(shapes, &format!("{prefix}encoder.layers."))),
        num_attention_heads: (hidden / 64).max(1),
        max_position_embeddings: shape("text_model.embeddings.position_embedding.weight")?[0],
        hidden_act: Activation::QuickGelu,
        layer_norm_eps: 1e-5,
    };
    Ok((config, names))
}

/// An OpenCLIP text encoder (SD2, SDXL's second) in Hugging Face CLIP names:
/// the fused QKV split by rows, the projection transposed. SD2 drops the last
/// layer, as diffusers does, since it conditions on the penultimate one.
pub fn open_clip_text(
    shapes: &HashMap<String, Vec<usize>>,
    prefix: &str,
    drop_last_layer: bool,
) -> Result<(ClipTextConfig, NameMap)> {
    let stored = |name: &str| {
        let key = format!("{prefix}{name}");
        shapes.get(&key).map(|shape| (key.clone(), shape.clone())).ok_or_else(|| anyhow!("missing tensor `{key}`"))
    };
    let (embedding_key, embedding) = stored("token_embedding.weight")?;
    let hidden = embedding[1];
    let layers = count_indices(shapes, &format!("{prefix}transformer.resblocks.")) - usize::from(drop_last_layer);
    let mut names = NameMap::new();
    names.insert("text_model.embeddings.token_embedding.weight".into(), Stored::Renamed(embedding_key));
    names.insert(
        "text_model.embeddings.position_embedding.weight".into(),
        Stored::Renamed(stored("positional_embedding")?.0),
    );
    for part in ["weight", "bias"] {
        names.insert(
            format!("text_model.final_layer_norm.{part}"),
            Stored::Renamed(stored(&format!("ln_final.{part}"))?.0),
        );
    }
    for n in 0..layers {
        let from = |name: &str| format!("{prefix}transformer.resblocks.{n}.{name}");
        let to = |name: &str| format!("text_model.encoder.layers.{n}.{name}");
        for part in ["weight", "bias"] {
            for (ldm, hf) in OPEN_CLIP_LAYER_RENAMES {
                names.insert(to(&format!("{hf}.{part}")), Stored::Renamed(from(&format!("{ldm}.{part}"))));
            }
            for (index, projection) in ["q_proj", "k_proj", "v_proj"].iter().enumerate() {
                let key = from(&format!("attn.in_proj_{part}"));
                names.insert(
                    to(&format!("self_attn.{projection}.{part}")),
                    Stored::Rows { key, start: index * hidden, len: hidden },
                );
            }
        }
    }
    if !drop_last_layer && let Ok((key, _)) = stored("text_projection") {
        names.insert("text_projection.weight".into(), Stored::Transposed(key));
    }
    let config = ClipTextConfig {
        vocab_size: embedding[0],
        hidden_size: hidden,
        intermediate_size: stored("transformer.resblocks.0.mlp.c_fc.weight")?.1[0],
        num_hidden_layers: layers,
        num_attention_heads: (hidden / 64).max(1),
        max_position_embeddings: stored("positional_embedding")?.1[0],
        hidden_act: Activation::Gelu,
        layer_norm_eps: 1e-5,
    };
    Ok((config, names))
}

/// One text encoder of a checkpoint, read as Hugging Face CLIP.
pub struct TextEncoderNames {
    /// `cond_stage_model.transformer.`, `conditioner.embedders.1.model.`, …
    pub prefix: &'static str,
    /// OpenCLIP (SD2, SDXL's second), whose tokenizer pads with `!`.
    pub open_clip: bool,
    pub config: ClipTextConfig,
    pub names: NameMap,
}

/// The family's text encoders in order (SDXL: two).
pub fn text_encoders(shapes: &HashMap<String, Vec<usize>>, family: Family) -> Result<Vec<TextEncoderNames>> {
    let (first, second) = text_prefixes(family);
    let mut encoders = Vec::new();
    for (index, prefix) in std::iter::once(first).chain(second).enumerate() {
        let open_clip = family == Family::Sd2 || index == 1;
        let (config, names) =
            if open_clip { open_clip_text(shapes, prefix, family == Family::Sd2) } else { clip_text(shapes, prefix) }?;
        encoders.push(TextEncoderNames { prefix, open_clip, config, names });
    }
    Ok(encoders)
}

/// The text encoder prefixes of a family: (first, second).
pub fn text_prefixes(family: Family) -> (&'static str, Option<&'static str>) {
    match family {
        Family::Sd1 => (SD1_TEXT_PREFIX, None),
        Family::Sd2 => (SD2_TEXT_PREFIX, None),
        Family::Sdxl => (SDXL_TEXT_PREFIX, Some(SDXL_TEXT2_PREFIX)),
    }
}

#[cfg(test)]
mod tests;
