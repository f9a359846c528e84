//! A diffusers model's tensors under the original names (LDM for SD1 and
//! SD2, SGM for SDXL), so that a model baked from a diffusers folder can be
//! written as one file that A1111, ComfyUI and diffusers' `from_single_file`
//! load.
//!
//! The names are the reverse of `single_file`'s translation and use its
//! tables; only the block arithmetic is written out again. Every plan is then
//! read back through the loader's own translation (names and shapes only):
//! that must lead to exactly the model tensors the plan took, so the two
//! directions cannot drift apart unnoticed.

use std::collections::{HashMap, HashSet};

use anyhow::{Context, Result, anyhow, bail, ensure};

use super::layout::ModelWeights;
use crate::model::Family;
use crate::model::single_file::{
    self, OPEN_CLIP_LAYER_RENAMES, RESNET_RENAMES, UNET_FIXED, UNET_PREFIX, VAE_MID_RENAMES, VAE_PREFIX,
};
use crate::model::unet::UNetConfig;
use crate::model::vae::VaeConfig;
use crate::model::weights::Stored;

/// One tensor of the original layout, made of model tensors stacked along
/// the first dimension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct OriginalTensor {
    pub name: String,
    /// Model names (`unet.conv_in.weight`): one, or OpenCLIP's q, k and v.
    pub parts: Vec<String>,
    /// Stored as the transpose of the model's (OpenCLIP's `text_projection`).
    pub transposed: bool,
    pub shape: Vec<usize>,
}

/// Splits `down_blocks.1.resnets.0.rest` into (`down_blocks`, 1, `resnets`, 0, `rest`).
fn block(name: &str) -> Option<(&str, usize, &str, usize, &str)> {
    let mut parts = name.splitn(5, '.');
    let kind = parts.next()?;
    let i = parts.next()?.parse().ok()?;
    let inner = parts.next()?;
    let j = parts.next()?.parse().ok()?;
    Some((kind, i, inner, j, parts.next()?))
}

fn resnet_original(rest: &str) -> Option<String> {
    RESNET_RENAMES.iter().find_map(|(ldm, diffusers)| rest.strip_prefix(diffusers).map(|tail| format!("{ldm}{tail}")))
}

/// The LDM name of a UNet tensor (without `model.diffusion_model.`): the
/// reverse of `single_file::unet_name`. `up_attention[i]` says whether up
/// block `i` has attentions, which moves its upsampler to the third slot.
fn unet_original(name: &str, layers: usize, up_attention: &[bool]) -> Option<String> {
    if let Some((ldm, tail)) = UNET_FIXED.iter().find_map(|(ldm, d)| Some((ldm, name.strip_prefix(d)?))) {
        return Some(format!("{ldm}{tail}"));
    }
    if let Some(rest) = name.strip_prefix("mid_block.") {
        let (module, rest) = rest.split_at(rest.match_indices('.').nth(1)?.0 + 1);
        return match module {
            "attentions.0." => Some(format!("middle_block.1.{rest}")),
            "resnets.0." => Some(format!("middle_block.0.{}", resnet_original(rest)?)),
            "resnets.1." => Some(format!("middle_block.2.{}", resnet_original(rest)?)),
            _ => None,
        };
    }
    let per_level = layers + 1;
    let (kind, i, inner, j, rest) = block(name)?;
    Some(match (kind, inner) {
        ("down_blocks", "resnets") => format!("input_blocks.{}.0.{}", i * per_level + j + 1, resnet_original(rest)?),
        ("down_blocks", "attentions") => format!("input_blocks.{}.1.{rest}", i * per_level + j + 1),
        ("down_blocks", "downsamplers") => {
            format!("input_blocks.{}.0.op.{}", (i + 1) * per_level, rest.strip_prefix("conv.")?)
        }
        ("up_blocks", "resnets") => format!("output_blocks.{}.0.{}", i * per_level + j, resnet_original(rest)?),
        ("up_blocks", "attentions") => format!("output_blocks.{}.1.{rest}", i * per_level + j),
        ("up_blocks", "upsamplers") => {
            let slot = if *up_attention.get(i)? { 2 } else { 1 };
            format!("output_blocks.{}.{slot}.{rest}", i * per_level + layers)
        }
        _ => return None,
    })
}

/// The LDM name of a VAE tensor (without `first_stage_model.`): the reverse
/// of `single_file::vae_name`; the decoder's up blocks count the other way.
fn vae_original(name: &str, levels: usize) -> Option<String> {
    let (side, rest) = name.split_once('.')?;
    if !matches!(side, "encoder" | "decoder") {
        return Some(name.to_string());
    }
    let rest = rest.replace("conv_shortcut", "nin_shortcut");
    let renamed = match block(&rest) {
        Some(("down_blocks", n, "resnets", j, tail)) => format!("down.{n}.block.{j}.{tail}"),
        Some(("down_blocks", n, "downsamplers", 0, tail)) => format!("down.{n}.downsample.{tail}"),
        Some(("up_blocks", n, "resnets", j, tail)) => format!("up.{}.block.{j}.{tail}", levels.checked_sub(n + 1)?),
        Some(("up_blocks", n, "upsamplers", 0, tail)) => format!("up.{}.upsample.{tail}", levels.checked_sub(n + 1)?),
        Some(_) => return None,
        None => match rest.strip_prefix("mid_block.") {
            Some(tail) => {
                let (ldm, tail) = VAE_MID_RENAMES.iter().find_map(|(ldm, d)| Some((ldm, tail.strip_prefix(d)?)))?;
                format!("mid.{ldm}{tail}")
            }
            None => rest.strip_prefix("conv_norm_out.").map_or(rest.clone(), |tail| format!("norm_out.{tail}")),
        },
    };
    Some(format!("{side}.{renamed}"))
}

/// Builds the plan from the model's tensors, part by part.
struct Planner<'a> {
    model: &'a ModelWeights,
    tensors: Vec<OriginalTensor>,
}

impl Planner<'_> {
    fn shape(&self, name: &str) -> Result<Vec<usize>> {
        let location =
            self.model.location(name).ok_or_else(|| anyhow!("{}: no `{name}`", self.model.path.display()))?;
        Ok(self.model.files[location.file].info(location.stored.key())?.shape.clone())
    }

    fn push(&mut self, name: String, parts: Vec<String>, transposed: bool) -> Result<()> {
        let shapes = parts.iter().map(|part| self.shape(part)).collect::<Result<Vec<_>>>()?;
        let mut shape = shapes[0].clone();
        if transposed {
            shape.reverse();
        }
        if parts.len() > 1 {
            shape[0] = shapes.iter().map(|s| s[0]).sum();
        }
        self.tensors.push(OriginalTensor { name, parts, transposed, shape });
        Ok(())
    }

    /// The names under `part.`, without it.
    fn names(&self, part: &str) -> Vec<String> {
        let prefix = format!("{part}.");
        let mut names: Vec<String> =
            self.model.locations().keys().filter_map(|name| Some(name.strip_prefix(&prefix)?.to_string())).collect();
        names.sort();
        names
    }

    fn unet(&mut self, config: &UNetConfig) -> Result<()> {
        let up_attention: Vec<bool> = config.up_block_types.iter().map(|kind| kind.starts_with("CrossAttn")).collect();
        for name in self.names("unet") {
            let ldm = unet_original(&name, config.layers_per_block, &up_attention)
                .ok_or_else(|| anyhow!("`unet.{name}` has no place in the original layout"))?;
            self.push(format!("{UNET_PREFIX}{ldm}"), vec![format!("unet.{name}")], false)?;
        }
        Ok(())
    }

    fn vae(&mut self, config: &VaeConfig) -> Result<()> {
        for name in self.names("vae") {
            let ldm = vae_original(&name, config.block_out_channels.len())
                .ok_or_else(|| anyhow!("`vae.{name}` has no place in the original layout"))?;
            self.push(format!("{VAE_PREFIX}{ldm}"), vec![format!("vae.{name}")], false)?;
            // The original VAE's middle attention is made of 1×1 convolutions.
            let tensor = self.tensors.last_mut().expect("just pushed");
            if ldm.contains(".mid.attn_1.") && tensor.shape.len() == 2 {
                tensor.shape.extend([1, 1]);
            }
        }
        Ok(())
    }

    /// OpenAI CLIP (SD1, SDXL's first encoder) keeps the Hugging Face names.
    fn clip(&mut self, part: &str, prefix: &str) -> Result<()> {
        for name in self.names(part) {
            // A buffer of 0..77 that loaders make themselves.
            if !name.ends_with("position_ids") {
                self.push(format!("{prefix}{name}"), vec![format!("{part}.{name}")], false)?;
            }
        }
        Ok(())
    }

    /// OpenCLIP (SD2, SDXL's second encoder): q, k and v fused into one
    /// input projection, the text projection transposed. SD2's original
    /// files hold one more layer than the model runs, since everything that
    /// loads them skips the last: it is written as a copy of the last layer.
    fn open_clip(&mut self, part: &str, prefix: &str, extra_layer: bool) -> Result<()> {
        let model = |name: &str| format!("{part}.text_model.{name}");
        let layers = self.names(part).iter().filter(|name| name.ends_with("layer_norm1.weight")).count();
        ensure!(layers > 0, "{}: `{part}` has no encoder layers", self.model.path.display());
        let mut plan = vec![
            ("token_embedding.weight".to_string(), vec![model("embeddings.token_embedding.weight")], false),
            ("positional_embedding".to_string(), vec![model("embeddings.position_embedding.weight")], false),
        ];
        for p in ["weight", "bias"] {
            plan.push((format!("ln_final.{p}"), vec![model(&format!("final_layer_norm.{p}"))], false));
        }
        for n in 0..layers + usize::from(extra_layer) {
            let layer = |name: &str| model(&format!("encoder.layers.{}.{name}", n.min(layers - 1)));
            for p in ["weight", "bias"] {
                for (ldm, hf) in OPEN_CLIP_LAYER_RENAMES {
                    plan.push((
                        format!("transformer.resblocks.{n}.{ldm}.{p}"),
                        vec![layer(&format!("{hf}.{p}"))],
                        false,
                    ));
                }
                let qkv = ["q_proj", "k_proj", "v_proj"].map(|q| layer(&format!("self_attn.{q}.{p}"))).to_vec();
                plan.push((format!("transformer.resblocks.{n}.attn.in_proj_{p}"), qkv, false));
            }
        }
        let projection = format!("{part}.text_projection.weight");
        if self.model.location(&projection).is_some() {
            plan.push(("text_projection".into(), vec![projection], true));
        }
        for (name, parts, transposed) in plan {
            self.push(format!("{prefix}{name}"), parts, transposed)?;
        }
        Ok(())
    }
}

/// The original-layout tensors of a diffusers model, in file order (UNet,
/// VAE, text encoders), checked against the single-file loader.
pub(super) fn original_tensors(model: &ModelWeights) -> Result<Vec<OriginalTensor>> {
    let config = |part: &str| model.path.join(part).join("config.json");
    let mut planner = Planner { model, tensors: Vec::new() };
    planner.unet(&UNetConfig::from_file(&config("unet"))?)?;
    planner.vae(&VaeConfig::from_file(&config("vae"))?)?;
    let (first, second) = single_file::text_prefixes(model.family);
    match model.family {
        Family::Sd1 => planner.clip("text_encoder", first)?,
        Family::Sd2 => planner.open_clip("text_encoder", first, true)?,
        Family::Sdxl => {
            planner.clip("text_encoder", first)?;
            planner.open_clip("text_encoder_2", second.expect("SDXL has two text encoders"), false)?;
        }
    }
    let tensors = planner.tensors;
    let used: HashSet<&str> = tensors.iter().flat_map(|t| t.parts.iter().map(String::as_str)).collect();
    if let Some(left) =
        model.locations().keys().find(|name| !used.contains(name.as_str()) && !name.ends_with("position_ids"))
    {
        bail!("{}: `{left}` has no place in the original layout", model.path.display());
    }
    check_against_loader(model, &tensors).with_context(|| {
        format!("{}: the original names planned do not read back (a bug in Easel)", model.path.display())
    })?;
    Ok(tensors)
}

/// Reads the planned names and shapes through the single-file loader's
/// translation: every model tensor must come back from where it was put.
fn check_against_loader(model: &ModelWeights, tensors: &[OriginalTensor]) -> Result<()> {
    let shapes: HashMap<String, Vec<usize>> = tensors.iter().map(|t| (t.name.clone(), t.shape.clone())).collect();
    let family = single_file::detect_family(&shapes)?;
    ensure!(family == model.family, "read back as {family:?}, not {:?}", model.family);
    let mut expected: HashMap<&str, Stored> = HashMap::new();
    for tensor in tensors {
        let rows = tensor.shape[0] / tensor.parts.len();
        for (index, part) in tensor.parts.iter().enumerate() {
            let key = tensor.name.clone();
            let stored = match (tensor.transposed, tensor.parts.len()) {
                (true, _) => Stored::Transposed(key),
                (false, 1) => Stored::Renamed(key),
                (false, _) => Stored::Rows { key, start: index * rows, len: rows },
            };
            // SD2's extra layer repeats the last one; the loader skips it.
            expected.entry(part.as_str()).or_insert(stored);
        }
    }
    let mut read_back =
        vec![("unet", single_file::unet(&shapes, family)?.1), ("vae", single_file::vae(&shapes, family)?.1)];
    let encoders = single_file::text_encoders(&shapes, family)?;
    read_back.extend(["text_encoder", "text_encoder_2"].into_iter().zip(encoders.into_iter().map(|e| e.names)));
    let mut found = 0;
    for (part, names) in read_back {
        for (name, stored) in names {
            let name = format!("{part}.{name}");
            ensure!(expected.get(name.as_str()) == Some(&stored), "the loader reads `{name}` from {stored:?}");
            found += 1;
        }
    }
    ensure!(found == expected.len(), "the loader finds {found} of the {} model tensors", expected.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn original_names_invert_the_loaders_translation() {
        let up_attention = [false, true, true];
        for ldm in [
            "input_blocks.0.0.weight",
            "input_blocks.1.0.in_layers.0.weight",
            "input_blocks.3.0.op.bias",
            "input_blocks.5.1.transformer_blocks.0.attn1.to_q.weight",
            "input_blocks.8.0.skip_connection.weight",
            "middle_block.0.emb_layers.1.bias",
            "middle_block.1.proj_in.weight",
            "middle_block.2.out_layers.3.weight",
            "output_blocks.2.1.conv.weight",
            "output_blocks.5.2.conv.bias",
            "output_blocks.7.1.norm.weight",
            "label_emb.0.2.weight",
            "out.2.bias",
        ] {
            let diffusers = single_file::unet_name(ldm, 2).unwrap();
            assert_eq!(unet_original(&diffusers, 2, &up_attention).as_deref(), Some(ldm), "{diffusers}");
        }
        for ldm in [
            "encoder.down.1.block.0.nin_shortcut.weight",
            "encoder.down.2.downsample.conv.bias",
            "decoder.up.0.block.2.conv1.weight",
            "decoder.up.3.upsample.conv.weight",
            "encoder.mid.attn_1.proj_out.weight",
            "decoder.mid.block_2.norm2.weight",
            "encoder.norm_out.weight",
            "decoder.conv_in.bias",
            "post_quant_conv.weight",
        ] {
            let diffusers = single_file::vae_name(ldm, 4);
            assert_eq!(vae_original(&diffusers, 4).as_deref(), Some(ldm), "{diffusers}");
        }
        assert_eq!(unet_original("down_blocks.0.samplers.0.conv.weight", 2, &up_attention), None);
        assert_eq!(vae_original("encoder.mid_block.attentions.0.to_x.weight", 4), None);
    }
}
