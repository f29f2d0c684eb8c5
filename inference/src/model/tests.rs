use super::*;

#[test]
fn weights_prefer_the_fp16_variant_under_f16_and_read_sharded_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let touch = |n: &str| std::fs::write(d.join(n), b"").unwrap();
    let names = |v: Vec<PathBuf>| -> Vec<String> {
        v.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect()
    };
    let err = weights(d, "model", DType::F32).unwrap_err().to_string();
    assert!(err.contains("model.safetensors") && err.contains("model.fp16.safetensors.index.json"), "{err}");
    touch("model.fp16.safetensors");
    assert_eq!(names(weights(d, "model", DType::F32).unwrap()), ["model.fp16.safetensors"], "the only one");
    touch("model.safetensors");
    assert_eq!(names(weights(d, "model", DType::F32).unwrap()), ["model.safetensors"]);
    assert_eq!(names(weights(d, "model", DType::F16).unwrap()), ["model.fp16.safetensors"]);

    let index = r#"{"metadata": {}, "weight_map": {"a": "u-00002.safetensors", "b": "u-00001.safetensors",
                    "c": "u-00001.safetensors"}}"#;
    std::fs::write(d.join("u.safetensors.index.json"), index).unwrap();
    let err = weights(d, "u", DType::F32).unwrap_err().to_string();
    assert!(err.contains("u-0000") && err.contains("missing"), "{err}");
    touch("u-00001.safetensors");
    touch("u-00002.safetensors");
    assert_eq!(names(weights(d, "u", DType::F32).unwrap()), ["u-00001.safetensors", "u-00002.safetensors"]);
    std::fs::write(d.join("v.safetensors.index.json"), r#"{"weight_map": {"a": "../x.safetensors"}}"#).unwrap();
    assert!(weights(d, "v", DType::F32).unwrap_err().to_string().contains("is not a file in"));
}
