//! LoRA module names without a model: kohya's flat names
//! (`lora_unet_down_blocks_0_attentions_0_…_to_q`) to and from the diffusers
//! module paths Easel uses (`unet.down_blocks.0.attentions.0.….to_q`), and
//! which model family a file was made for. With no model at hand the names
//! are parsed, so converting or inspecting a file never loads gigabytes.

use std::collections::BTreeMap;

use super::super::Family;
use super::super::single_file::{unet_ldm_module, unet_name};

/// How a family names its LoRA modules. SDXL's UNet names in kohya files are
/// the original SGM block names, which depend on the residual blocks per level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Naming {
    pub family: Family,
    pub layers_per_block: usize,
}

/// Underscore-joined words of the diffusers and transformers module names;
/// every other `_` in a kohya name stands for a `.`.
const COMPOUND_WORDS: [&str; 30] = [
    "down_blocks",
    "up_blocks",
    "mid_block",
    "transformer_blocks",
    "input_blocks",
    "output_blocks",
    "middle_block",
    "to_q",
    "to_k",
    "to_v",
    "to_out",
    "proj_in",
    "proj_out",
    "text_model",
    "self_attn",
    "q_proj",
    "k_proj",
    "v_proj",
    "out_proj",
    "conv_in",
    "conv_out",
    "conv_shortcut",
    "time_emb_proj",
    "time_embedding",
    "add_embedding",
    "linear_1",
    "linear_2",
    "final_layer_norm",
    "layer_norm1",
    "layer_norm2",
];

/// `a_b_c` back to its dotted module path, joining the known compound words.
fn undo_flattening(flat: &str) -> String {
    let words: Vec<&str> = flat.split('_').collect();
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let joined = (2..=3)
            .rev()
            .filter(|n| i + n <= words.len())
            .map(|n| (n, words[i..i + n].join("_")))
            .find(|(_, candidate)| COMPOUND_WORDS.contains(&candidate.as_str()));
        let (taken, part) = joined.unwrap_or((1, words[i].to_string()));
        parts.push(part);
        i += taken;
    }
    parts.join(".")
}

impl Naming {
    /// The naming of a family's released models (two residual blocks per level).
    pub fn standard(family: Family) -> Self {
        Self { family, layers_per_block: 2 }
    }

    /// The kohya name of a module path: SD1/SD2 flatten the diffusers path,
    /// SDXL uses the SGM block names and `te1`/`te2`.
    pub fn kohya(&self, path: &str) -> Option<String> {
        let flat = |prefix: &str, module: &str| format!("{prefix}{}", module.replace('.', "_"));
        if let Some(module) = path.strip_prefix("unet.") {
            return Some(match self.family {
                Family::Sdxl => flat("lora_unet_", &unet_ldm_module(module, self.layers_per_block)?),
                _ => flat("lora_unet_", module),
            });
        }
        if let Some(module) = path.strip_prefix("text_encoder_2.") {
            return Some(flat("lora_te2_", module));
        }
        let module = path.strip_prefix("text_encoder.")?;
        Some(flat(if self.family == Family::Sdxl { "lora_te1_" } else { "lora_te_" }, module))
    }

    /// The module path of a kohya name. SDXL's SGM names are translated to
    /// diffusers blocks; the diffusers-style names some SDXL tools write are
    /// accepted as they are.
    pub fn path(&self, kohya: &str) -> Option<String> {
        let (component, flat) = [
            ("lora_unet_", "unet"),
            ("lora_te1_", "text_encoder"),
            ("lora_te2_", "text_encoder_2"),
            ("lora_te_", "text_encoder"),
        ]
        .into_iter()
        .find_map(|(prefix, component)| Some((component, kohya.strip_prefix(prefix)?)))?;
        let module = undo_flattening(flat);
        let module = if component == "unet"
            && ["input_blocks.", "middle_block.", "output_blocks."].iter().any(|b| module.starts_with(b))
        {
            unet_name(&format!("{module}.weight"), self.layers_per_block)?.strip_suffix(".weight")?.to_string()
        } else {
            module
        };
        Some(format!("{component}.{module}"))
    }
}

/// The evidence of a family nothing in the file points to.
pub const ASSUMED: &str = "nothing in the file (assumed)";

/// A family read from a LoRA file, with what it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FamilyGuess {
    pub family: Family,
    /// What decided it, for `lora info` (`"ss_base_model_version"`, `"its second text encoder"`, …).
    pub evidence: &'static str,
}

/// The family a LoRA was made for, from its key names, its metadata, and the
/// width of the cross-attention it adapts (768 SD1, 1024 SD2, 2048 SDXL).
/// `modules` are (module path, input width) pairs.
pub fn detect_family(keys: &[&str], metadata: &BTreeMap<String, String>, modules: &[(String, usize)]) -> FamilyGuess {
    let guess = |family, evidence| FamilyGuess { family, evidence };
    let sgm = ["lora_unet_input_blocks", "lora_unet_middle_block", "lora_unet_output_blocks"];
    if keys.iter().any(|k| k.starts_with("lora_te2_") || k.starts_with("text_encoder_2.")) {
        return guess(Family::Sdxl, "its second text encoder");
    }
    if keys.iter().any(|k| sgm.iter().any(|prefix| k.starts_with(prefix))) {
        return guess(Family::Sdxl, "its SGM block names");
    }
    let version = metadata.get("ss_base_model_version").or_else(|| metadata.get("modelspec.architecture"));
    if let Some(version) = version.map(|v| v.to_ascii_lowercase()) {
        if version.starts_with("sdxl") || version.starts_with("stable-diffusion-xl") {
            return guess(Family::Sdxl, "its metadata");
        }
        if version.starts_with("sd_v2") || version.starts_with("stable-diffusion-v2") {
            return guess(Family::Sd2, "its metadata");
        }
        if version.starts_with("sd_v1") || version.starts_with("stable-diffusion-v1") {
            return guess(Family::Sd1, "its metadata");
        }
    }
    let cross_attention = modules.iter().find(|(path, _)| path.ends_with("attn2.to_k") || path.ends_with("attn2.to_v"));
    match cross_attention.map(|(_, width)| *width) {
        Some(2048) => guess(Family::Sdxl, "its cross-attention width"),
        Some(1024) => guess(Family::Sd2, "its cross-attention width"),
        Some(768) => guess(Family::Sd1, "its cross-attention width"),
        _ => guess(Family::Sd1, ASSUMED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kohya_names_parse_back_to_their_paths() {
        let paths = [
            "unet.down_blocks.0.attentions.1.transformer_blocks.0.attn1.to_out.0",
            "unet.mid_block.attentions.0.proj_in",
            "unet.up_blocks.3.attentions.2.transformer_blocks.0.ff.net.0.proj",
            "unet.up_blocks.1.attentions.0.transformer_blocks.9.ff.net.2",
            "text_encoder.text_model.encoder.layers.11.self_attn.q_proj",
            "text_encoder.text_model.encoder.layers.0.mlp.fc1",
        ];
        for family in [Family::Sd1, Family::Sd2, Family::Sdxl] {
            let naming = Naming::standard(family);
            for path in paths {
                let kohya = naming.kohya(path).unwrap();
                assert_eq!(naming.path(&kohya).as_deref(), Some(path), "{family:?}: {kohya}");
            }
        }
        let sdxl = Naming::standard(Family::Sdxl);
        let te2 = "text_encoder_2.text_model.encoder.layers.31.self_attn.out_proj";
        assert_eq!(sdxl.kohya(te2).as_deref(), Some("lora_te2_text_model_encoder_layers_31_self_attn_out_proj"));
        assert_eq!(sdxl.path("lora_te2_text_model_encoder_layers_31_self_attn_out_proj").as_deref(), Some(te2));
    }

    #[test]
    fn sdxl_uses_sgm_block_names_and_accepts_diffusers_ones() {
        let sdxl = Naming::standard(Family::Sdxl);
        let path = "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q";
        assert_eq!(sdxl.kohya(path).as_deref(), Some("lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q"));
        let diffusers_style = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q";
        assert_eq!(sdxl.path(diffusers_style).as_deref(), Some(path));
        assert_eq!(
            sdxl.path("lora_unet_middle_block_1_proj_out").as_deref(),
            Some("unet.mid_block.attentions.0.proj_out")
        );
        assert_eq!(sdxl.path("lora_vae_decoder_conv_in"), None);
    }

    #[test]
    fn families_come_from_keys_then_metadata_then_widths() {
        let none = BTreeMap::new();
        let te2 = ["lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_down.weight"];
        assert_eq!(detect_family(&te2, &none, &[]).family, Family::Sdxl);
        let v2 = BTreeMap::from([("ss_base_model_version".to_string(), "sd_v2_v".to_string())]);
        assert_eq!(detect_family(&[], &v2, &[]).family, Family::Sd2);
        let to_k = vec![("unet.mid_block.attentions.0.transformer_blocks.0.attn2.to_k".to_string(), 1024)];
        assert_eq!(
            detect_family(&[], &none, &to_k),
            FamilyGuess { family: Family::Sd2, evidence: "its cross-attention width" }
        );
        assert_eq!(detect_family(&[], &none, &[]).evidence, ASSUMED);
    }
}
