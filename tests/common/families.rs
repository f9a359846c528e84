//! SD2- and SDXL-shaped random models (tiny; written as diffusers folders
//! by `builtin::write_random_model`).

use easel::model::builtin::{RandomModel, TextEncoderSpec};
use serde_json::json;

fn text_encoder(activation: &str) -> serde_json::Value {
    json!({"vocab_size": 49408, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 2, "max_position_embeddings": 77, "hidden_act": activation, "layer_norm_eps": 1e-5})
}

fn vae(scaling: f64) -> serde_json::Value {
    json!({"block_out_channels": [32, 32, 32, 32], "layers_per_block": 1, "latent_channels": 4, "scaling_factor": scaling})
}

pub fn sd2() -> RandomModel {
    RandomModel {
        unet: json!({"in_channels": 4, "out_channels": 4, "block_out_channels": [32, 64],
            "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"], "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
            "layers_per_block": 2, "attention_head_dim": [2, 4], "cross_attention_dim": 32, "use_linear_projection": true,
            "sample_size": 8}),
        vae: vae(0.18215),
        text_encoders: vec![TextEncoderSpec { config: text_encoder("gelu"), pad_token: "!", projection: None }],
        scheduler: json!({"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
            "prediction_type": "v_prediction", "steps_offset": 1, "set_alpha_to_one": false}),
    }
}

pub fn sdxl() -> RandomModel {
    RandomModel {
        unet: json!({"in_channels": 4, "out_channels": 4, "block_out_channels": [32, 64],
            "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"], "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
            "layers_per_block": 2, "attention_head_dim": [2, 4], "transformer_layers_per_block": [1, 2],
            "cross_attention_dim": 64, "use_linear_projection": true, "addition_embed_type": "text_time",
            "addition_time_embed_dim": 8, "projection_class_embeddings_input_dim": 64, "sample_size": 8}),
        vae: vae(0.13025),
        text_encoders: vec![
            TextEncoderSpec { config: text_encoder("quick_gelu"), pad_token: "<|endoftext|>", projection: None },
            TextEncoderSpec { config: text_encoder("gelu"), pad_token: "!", projection: Some(16) },
        ],
        scheduler: json!({"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
            "prediction_type": "epsilon", "steps_offset": 1, "set_alpha_to_one": false}),
    }
}
