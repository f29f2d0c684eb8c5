//! CLIP's byte-level BPE tokenizer, read from a checkout's `vocab.json` and
//! `merges.txt` (real Stable Diffusion checkouts ship no `tokenizer.json`).
//!
//! Written here rather than pulled from the `tokenizers` crate: CLIP's scheme
//! is small (lower-casing, a fixed pre-tokenizer, byte-to-unicode mapping,
//! `</w>` word ends, rank-ordered merges) and the crate would add a large
//! dependency tree for it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The token that starts every sequence.
pub const START_OF_TEXT: &str = "<|startoftext|>";
/// The token that ends every sequence (and pads it, unless told otherwise).
pub const END_OF_TEXT: &str = "<|endoftext|>";

/// Why a tokenizer could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file was read but its content is not what CLIP's tokenizer needs.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// A loaded CLIP tokenizer.
#[derive(Debug, Clone)]
pub struct ClipTokenizer {
    encoder: HashMap<String, u32>,
    ranks: HashMap<(String, String), usize>,
    byte_encoder: [char; 256],
    /// Id of [`START_OF_TEXT`].
    pub bos: u32,
    /// Id of [`END_OF_TEXT`].
    pub eos: u32,
    /// Id used to pad sequences to the text encoder's length.
    pub pad: u32,
}

impl ClipTokenizer {
    /// Reads `vocab.json` and `merges.txt` from `dir`; `pad_token` names the
    /// padding token (`"!"` for SD 2.x, [`END_OF_TEXT`] for SD 1.x).
    pub fn from_dir(dir: &Path, pad_token: Option<&str>) -> Result<Self, TokenizerError> {
        let vocab_path = dir.join("vocab.json");
        let merges_path = dir.join("merges.txt");
        let read = |p: &Path| std::fs::read_to_string(p).map_err(|source| TokenizerError::Read { path: p.into(), source });
        let vocab = read(&vocab_path)?;
        let merges = read(&merges_path)?;
        let encoder: HashMap<String, u32> = serde_json::from_str(&vocab).map_err(|e| TokenizerError::Invalid {
            path: vocab_path.clone(),
            reason: format!("not a JSON object of token -> id: {e}"),
        })?;
        let invalid = |path: &Path, reason: String| TokenizerError::Invalid { path: path.into(), reason };
        let mut ranks = HashMap::new();
        for (n, line) in merges.lines().enumerate() {
            if line.starts_with("#version") || line.trim().is_empty() {
                continue;
            }
            let Some((a, b)) = line.split_once(' ') else {
                return Err(invalid(&merges_path, format!("line {}: expected two tokens separated by a space", n + 1)));
            };
            let rank = ranks.len();
            ranks.entry((a.to_owned(), b.to_owned())).or_insert(rank);
        }
        let id = |tok: &str| {
            encoder.get(tok).copied().ok_or_else(|| invalid(&vocab_path, format!("the vocabulary has no {tok:?} token")))
        };
        let (bos, eos) = (id(START_OF_TEXT)?, id(END_OF_TEXT)?);
        let pad = match pad_token {
            Some(t) => id(t)?,
            None => eos,
        };
        let byte_encoder = bytes_to_unicode();
        // Every byte must have a token, or some prompts could not be encoded.
        if let Some(c) = byte_encoder.iter().find(|c| !encoder.contains_key(&c.to_string())) {
            return Err(invalid(&vocab_path, format!("the vocabulary lacks the byte token {c:?}")));
        }
        Ok(Self { encoder, ranks, byte_encoder, bos, eos, pad })
    }

    /// Number of entries in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.encoder.len()
    }

    /// The largest token id.
    pub fn max_id(&self) -> u32 {
        self.encoder.values().copied().max().unwrap_or(0)
    }

    /// Token ids of `text` without start/end tokens.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
        let mut ids = Vec::new();
        for word in pre_tokenize(&text) {
            if word == START_OF_TEXT || word == END_OF_TEXT {
                ids.push(self.encoder[word]);
                continue;
            }
            let mut symbols: Vec<String> = word.bytes().map(|b| self.byte_encoder[b as usize].to_string()).collect();
            if let Some(last) = symbols.last_mut() {
                last.push_str("</w>");
            }
            for sym in self.merge(symbols) {
                // Merged symbols always exist in a well-formed vocabulary; a
                // merge without a vocabulary entry falls back to its bytes.
                match self.encoder.get(&sym) {
                    Some(&id) => ids.push(id),
                    None => ids.extend(self.fallback(&sym)),
                }
            }
        }
        ids
    }

    /// `[bos] + tokens + [eos]`, truncated to `len` (keeping the final eos)
    /// and padded with the pad token.
    pub fn encode_padded(&self, text: &str, len: usize) -> Vec<u32> {
        let mut ids = vec![self.bos];
        ids.extend(self.encode(text));
        ids.truncate(len.saturating_sub(1));
        ids.push(self.eos);
        ids.resize(len, self.pad);
        ids
    }

    fn merge(&self, mut symbols: Vec<String>) -> Vec<String> {
        while symbols.len() > 1 {
            let best = symbols
                .windows(2)
                .enumerate()
                .filter_map(|(i, w)| self.ranks.get(&(w[0].clone(), w[1].clone())).map(|r| (*r, i)))
                .min();
            let Some((_, i)) = best else { break };
            let merged = format!("{}{}", symbols[i], symbols[i + 1]);
            symbols.splice(i..i + 2, [merged]);
        }
        symbols
    }

    fn fallback(&self, sym: &str) -> Vec<u32> {
        let (body, end) = match sym.strip_suffix("</w>") {
            Some(b) => (b, true),
            None => (sym, false),
        };
        let chars: Vec<char> = body.chars().collect();
        chars
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut s = c.to_string();
                if end && i + 1 == chars.len() {
                    s.push_str("</w>");
                }
                self.encoder.get(&s).or_else(|| self.encoder.get(&c.to_string())).copied().unwrap_or(self.eos)
            })
            .collect()
    }
}

/// GPT-2/CLIP's reversible map from bytes to printable characters.
pub fn bytes_to_unicode() -> [char; 256] {
    let mut table = ['\0'; 256];
    let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let mut n = 0;
    for b in 0..256u32 {
        table[b as usize] = if printable(b) {
            char::from_u32(b).unwrap_or('?')
        } else {
            n += 1;
            char::from_u32(255 + n).unwrap_or('?')
        };
    }
    table
}

/// CLIP's pre-tokenizer: the special tokens, English contractions, runs of
/// letters, single digits, and runs of other non-space characters.
fn pre_tokenize(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if c.is_whitespace() {
            rest = &rest[c.len_utf8()..];
            continue;
        }
        let len = if let Some(special) = [START_OF_TEXT, END_OF_TEXT].into_iter().find(|s| rest.starts_with(s)) {
            special.len()
        } else if let Some(contraction) =
            ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"].into_iter().find(|s| rest.starts_with(s))
        {
            contraction.len()
        } else if c.is_alphabetic() {
            run_len(rest, char::is_alphabetic)
        } else if c.is_numeric() {
            c.len_utf8()
        } else {
            run_len(rest, |c| !(c.is_whitespace() || c.is_alphabetic() || c.is_numeric()))
        };
        out.push(&rest[..len]);
        rest = &rest[len..];
    }
    out
}

fn run_len(s: &str, keep: impl Fn(char) -> bool) -> usize {
    s.char_indices().find(|(_, c)| !keep(*c)).map_or(s.len(), |(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A vocabulary in CLIP's layout: bytes, bytes + `</w>`, merges, specials.
    fn write(dir: &Path, merges: &[(&str, &str)]) {
        let mut vocab: Vec<String> = bytes_to_unicode().iter().map(|c| c.to_string()).collect();
        vocab.extend(bytes_to_unicode().iter().map(|c| format!("{c}</w>")));
        vocab.extend(merges.iter().map(|(a, b)| format!("{a}{b}")));
        vocab.extend([START_OF_TEXT.to_owned(), END_OF_TEXT.to_owned()]);
        let map: serde_json::Map<String, serde_json::Value> =
            vocab.into_iter().enumerate().map(|(i, t)| (t, i.into())).collect();
        std::fs::write(dir.join("vocab.json"), serde_json::Value::Object(map).to_string()).unwrap();
        let text: String =
            std::iter::once("#version: 0.2\n".to_owned()).chain(merges.iter().map(|(a, b)| format!("{a} {b}\n"))).collect();
        std::fs::write(dir.join("merges.txt"), text).unwrap();
    }

    #[test]
    fn merges_in_rank_order_and_marks_word_ends() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &[("c", "a"), ("ca", "t</w>"), ("a", "t</w>")]);
        let tok = ClipTokenizer::from_dir(dir.path(), None).unwrap();
        let id = |t: &str| tok.encoder[t];
        // "cat" -> c a t</w> -> ca t</w> (rank 0 beats a t</w>) -> cat</w>
        assert_eq!(tok.encode("Cat"), vec![id("cat</w>")]);
        // "at" merges through the lower-ranked pair.
        assert_eq!(tok.encode("at  AT"), vec![id("at</w>"), id("at</w>")]);
        // A punctuation run is one word (no merge here, so its bytes), digits
        // are split one by one, and a contraction is its own word.
        assert_eq!(tok.encode("a,! 42 it's"), vec![
            id("a</w>"),
            id(","),
            id("!</w>"),
            id("4</w>"),
            id("2</w>"),
            id("i"),
            id("t</w>"),
            id("'"),
            id("s</w>"),
        ]);
    }

    #[test]
    fn pads_truncates_and_keeps_the_end_token() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &[]);
        let tok = ClipTokenizer::from_dir(dir.path(), Some("!")).unwrap();
        let ids = tok.encode_padded("ab", 6);
        assert_eq!(ids, vec![tok.bos, tok.encoder["a"], tok.encoder["b</w>"], tok.eos, tok.pad, tok.pad]);
        assert_eq!(tok.pad, tok.encoder["!"]);
        let long = tok.encode_padded("a b c d e f g", 4);
        assert_eq!(long.len(), 4);
        assert_eq!((long[0], long[3]), (tok.bos, tok.eos));
    }

    #[test]
    fn names_the_file_and_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let err = ClipTokenizer::from_dir(dir.path(), None).unwrap_err().to_string();
        assert!(err.contains("vocab.json"), "{err}");
        write(dir.path(), &[]);
        std::fs::write(dir.path().join("vocab.json"), r#"{"a": 0}"#).unwrap();
        let err = ClipTokenizer::from_dir(dir.path(), None).unwrap_err().to_string();
        assert!(err.contains("vocab.json") && err.contains("<|startoftext|>"), "{err}");
        std::fs::write(dir.path().join("merges.txt"), "#version: 0.2
ab
").unwrap();
        let err = ClipTokenizer::from_dir(dir.path(), None).unwrap_err().to_string();
        assert!(err.contains("merges.txt") && err.contains("line 2"), "{err}");
    }
}
