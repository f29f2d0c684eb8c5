//! Byte mutation for the property tests of parsers of untrusted input
//! (`tests/fuzz.rs` of each crate): a seed from the crate's testdata with
//! bytes overwritten, inserted or removed.

/// `seed` with `edits` applied: (position, operation, byte), positions taken
/// modulo the length; operations overwrite, insert or remove a byte.
pub fn mutate(seed: &[u8], edits: &[(usize, u8, u8)]) -> Vec<u8> {
    let mut out = seed.to_vec();
    for &(at, op, byte) in edits {
        let at = if out.is_empty() { 0 } else { at % out.len() };
        match op % 3 {
            0 if !out.is_empty() => out[at] = byte,
            1 => out.insert(at, byte),
            _ if !out.is_empty() => {
                out.remove(at);
            }
            _ => out.push(byte),
        }
    }
    out
}

/// The files of `dir`, sorted by name, read whole.
pub fn corpus(dir: &std::path::Path) -> Vec<Vec<u8>> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    paths.iter().map(|p| std::fs::read(p).expect("read seed")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_overwrite_insert_and_remove() {
        assert_eq!(mutate(b"abc", &[(0, 0, b'x')]), b"xbc");
        assert_eq!(mutate(b"abc", &[(4, 1, b'y')]), b"aybc");
        assert_eq!(mutate(b"abc", &[(2, 2, 0)]), b"ab");
        assert_eq!(mutate(b"", &[(9, 2, b'z')]), b"z");
    }
}
