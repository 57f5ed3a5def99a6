//! GPT-2's byte <-> printable-unicode map.
//!
//! Byte-level BPE works on raw bytes, but vocabulary files store tokens as text. GPT-2 maps each
//! of the 256 bytes to one printable unicode character: the 188 bytes that already print as
//! themselves in Latin-1 (`!`..`~`, `¡`..`¬`, `®`..`ÿ`) keep their code point, and the other 68
//! (control bytes, space, DEL, NBSP, soft hyphen) are moved to U+0100 onwards, in byte order. So
//! a space becomes `Ġ` (U+0120) and a newline `Ċ` (U+010A).
//!
//! The same order also numbers GPT-2's first 256 token ids: id `i` is the i-th byte in
//! [`GPT2_BYTE_ORDER`] (printable bytes first, then the moved ones).

use std::sync::OnceLock;

fn prints_as_itself(b: u8) -> bool {
    matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF)
}

struct ByteMap {
    to_char: [char; 256],
    gpt2_order: [u8; 256],
}

fn byte_map() -> &'static ByteMap {
    static MAP: OnceLock<ByteMap> = OnceLock::new();
    MAP.get_or_init(|| {
        let mut to_char = ['\0'; 256];
        let mut moved = 0u32;
        for b in 0..=255u8 {
            to_char[b as usize] = if prints_as_itself(b) {
                char::from(b)
            } else {
                moved += 1;
                char::from_u32(255 + moved).expect("U+0100..U+0143 are valid chars")
            };
        }
        let mut gpt2_order = [0u8; 256];
        let order =
            (0..=255u8).filter(|&b| prints_as_itself(b)).chain((0..=255u8).filter(|&b| !prints_as_itself(b)));
        for (slot, b) in gpt2_order.iter_mut().zip(order) {
            *slot = b;
        }
        ByteMap { to_char, gpt2_order }
    })
}

/// The printable character that stands for byte `b` in vocabulary files.
pub fn byte_to_char(b: u8) -> char {
    byte_map().to_char[b as usize]
}

/// The byte a vocabulary character stands for, or `None` if it is not one of the 256.
pub fn char_to_byte(c: char) -> Option<u8> {
    let code = c as u32;
    let b = if code < 256 && prints_as_itself(code as u8) {
        code as u8
    } else if (256..256 + 68).contains(&code) {
        (0..=255u8).filter(|&b| !prints_as_itself(b)).nth((code - 256) as usize)?
    } else {
        return None;
    };
    Some(b)
}

/// Token bytes as they are written in vocab.json / merges.txt / tokenizer.json.
pub fn bytes_to_token_text(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| byte_to_char(b)).collect()
}

/// The inverse of [`bytes_to_token_text`]; `None` if a character is outside the byte alphabet.
pub fn token_text_to_bytes(text: &str) -> Option<Vec<u8>> {
    text.chars().map(char_to_byte).collect()
}

/// GPT-2's order of the 256 single-byte tokens: id `i` is the byte `GPT2_BYTE_ORDER[i]`.
pub fn gpt2_byte_order() -> &'static [u8; 256] {
    &byte_map().gpt2_order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_round_trips_through_a_printable_char() {
        let mut seen = std::collections::HashSet::new();
        for b in 0..=255u8 {
            let c = byte_to_char(b);
            assert!(!c.is_whitespace() && !c.is_control(), "byte {b} maps to {c:?}");
            assert!(seen.insert(c), "two bytes share {c:?}");
            assert_eq!(char_to_byte(c), Some(b));
        }
        assert_eq!(byte_to_char(b' '), 'Ġ');
        assert_eq!(byte_to_char(b'\n'), 'Ċ');
        assert_eq!(char_to_byte('€'), None);
    }

    #[test]
    fn gpt2_order_starts_with_printables_and_is_a_permutation() {
        let order = gpt2_byte_order();
        assert_eq!(order[0], b'!');
        assert_eq!(order[93], b'~');
        assert_eq!(order[188], 0);
        let mut sorted = order.to_vec();
        sorted.sort();
        assert_eq!(sorted, (0..=255).collect::<Vec<u8>>());
    }
}
