use candle_core::{Device, Tensor};

use super::*;

fn cond(v: f32) -> Conditioning {
    Conditioning { context: Tensor::new(&[v], &Device::Cpu).unwrap(), pooled: None }
}

fn value(c: &Conditioning) -> f32 {
    c.context.to_vec1::<f32>().unwrap()[0]
}

#[test]
fn second_lookup_is_a_hit_with_the_same_tensor() {
    let cache = EmbedCache::default();
    let a = cache.get_or_try::<()>("cat", "", true, || Ok(cond(1.0))).unwrap();
    let b = cache.get_or_try::<()>("cat", "", true, || panic!("must hit")).unwrap();
    assert_eq!(value(&a), value(&b));
    assert_eq!(cache.stats(), (1, 1));
    // Another negative prompt or guidance is another key.
    cache.get_or_try::<()>("cat", "dog", true, || Ok(cond(2.0))).unwrap();
    cache.get_or_try::<()>("cat", "", false, || Ok(cond(3.0))).unwrap();
    assert_eq!(cache.stats(), (1, 3));
}

#[test]
fn least_recently_used_is_evicted_at_capacity() {
    let cache = EmbedCache::default();
    for i in 0..CAPACITY {
        cache.get_or_try::<()>(&i.to_string(), "", true, || Ok(cond(i as f32))).unwrap();
    }
    // Touch "0" so "1" is the oldest.
    cache.get_or_try::<()>("0", "", true, || panic!("must hit")).unwrap();
    cache.get_or_try::<()>("new", "", true, || Ok(cond(-1.0))).unwrap();
    assert_eq!(cache.len(), CAPACITY);
    let mut made = false;
    cache
        .get_or_try::<()>("1", "", true, || {
            made = true;
            Ok(cond(1.0))
        })
        .unwrap();
    assert!(made, "\"1\" was evicted");
    cache.get_or_try::<()>("0", "", true, || panic!("\"0\" was kept")).unwrap();
}

#[test]
fn errors_are_not_cached() {
    let cache = EmbedCache::default();
    assert!(cache.get_or_try("x", "", true, || Err("boom")).is_err());
    assert!(cache.is_empty());
}
