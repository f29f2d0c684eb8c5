use super::*;

fn write(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

/// SD 2.1's `unet/config.json` as published.
const SD21_UNET: &str = r#"{
  "_class_name": "UNet2DConditionModel", "_diffusers_version": "0.10.0.dev0",
  "act_fn": "silu", "attention_head_dim": [5, 10, 20, 20],
  "block_out_channels": [320, 640, 1280, 1280], "center_input_sample": false,
  "cross_attention_dim": 1024,
  "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
  "downsample_padding": 1, "dual_cross_attention": false, "flip_sin_to_cos": true, "freq_shift": 0,
  "in_channels": 4, "layers_per_block": 2, "mid_block_scale_factor": 1, "norm_eps": 1e-05,
  "norm_num_groups": 32, "num_class_embeds": null, "only_cross_attention": false, "out_channels": 4,
  "sample_size": 96,
  "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
  "use_linear_projection": true, "upcast_attention": true
}"#;

#[test]
fn reads_sd21_unet_as_candles_preset_has_it() {
    let (_d, p) = write(SD21_UNET);
    let spec = unet(&p).unwrap();
    let c = &spec.config;
    let heads: Vec<usize> = c.blocks.iter().map(|b| b.attention_head_dim).collect();
    assert_eq!(heads, [5, 10, 20, 20]);
    let cross: Vec<Option<usize>> = c.blocks.iter().map(|b| b.use_cross_attn).collect();
    assert_eq!(cross, [Some(1), Some(1), Some(1), None]);
    assert_eq!((c.cross_attention_dim, c.use_linear_projection, c.layers_per_block), (1024, true, 2));
    assert_eq!((spec.in_channels, spec.out_channels), (4, 4));
}

#[test]
fn refuses_unsupported_unet_fields_by_name() {
    for (field, value) in [
        ("act_fn", json!("gelu")),
        ("addition_embed_type", json!("image")),
        ("time_cond_proj_dim", json!(256)),
        ("down_block_types", json!(["CrossAttnDownBlock2D", "Weird", "CrossAttnDownBlock2D", "DownBlock2D"])),
    ] {
        let mut v: Value = serde_json::from_str(SD21_UNET).unwrap();
        v[field] = value;
        let (_d, p) = write(&v.to_string());
        let err = unet(&p).unwrap_err();
        assert_eq!(err.field, field, "{err}");
        assert!(err.to_string().contains("config.json"), "{err}");
    }
}

#[test]
fn reads_vae_and_clip_and_refuses_bad_values() {
    let (_d, p) = write(
        r#"{"_class_name": "AutoencoderKL", "act_fn": "silu", "block_out_channels": [128, 256, 512, 512],
           "down_block_types": ["DownEncoderBlock2D","DownEncoderBlock2D","DownEncoderBlock2D","DownEncoderBlock2D"],
           "up_block_types": ["UpDecoderBlock2D","UpDecoderBlock2D","UpDecoderBlock2D","UpDecoderBlock2D"],
           "in_channels": 3, "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32,
           "out_channels": 3, "sample_size": 768}"#,
    );
    let v = vae(&p).unwrap();
    assert_eq!((v.scale(), v.config.layers_per_block, v.scaling_factor), (8, 2, 0.18215));

    let (_d, p) = write(
        r#"{"architectures": ["CLIPTextModel"], "hidden_act": "gelu", "hidden_size": 1024,
           "intermediate_size": 4096, "model_type": "clip_text_model", "num_attention_heads": 16,
           "num_hidden_layers": 23, "vocab_size": 49408, "projection_dim": 512, "torch_dtype": "float32"}"#,
    );
    let c = clip(&p).unwrap();
    assert_eq!((c.num_hidden_layers, c.activation, c.max_position_embeddings), (23, Activation::Gelu, 77));

    let (_d, p) = write(
        r#"{"hidden_act": "relu", "hidden_size": 8, "intermediate_size": 8,
        "num_attention_heads": 2, "num_hidden_layers": 1, "vocab_size": 10}"#,
    );
    let err = clip(&p).unwrap_err();
    assert_eq!(err.field, "hidden_act");
    assert!(err.to_string().contains("quick_gelu"), "{err}");
}
