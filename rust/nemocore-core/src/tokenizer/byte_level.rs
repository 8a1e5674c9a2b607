//! GPT-2's byte-to-unicode mapping.
//!
//! Byte-level BPE vocabularies spell every byte as a printable character so
//! that tokens are valid strings: the printable Latin-1 bytes (`!`..`~`,
//! `¡`..`¬`, `®`..`ÿ`) stand for themselves and the other 68 bytes are given
//! the code points 256, 257, ... in byte order (so a space is `Ġ`, U+0120).

/// The character standing for each byte.
pub static BYTE_TO_CHAR: [char; 256] = build_byte_to_char();

const fn is_printable(b: u32) -> bool {
    (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)
}

const fn build_byte_to_char() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    let mut b = 0u32;
    while b < 256 {
        let code = if is_printable(b) {
            b
        } else {
            let c = next;
            next += 1;
            c
        };
        table[b as usize] = match char::from_u32(code) {
            Some(c) => c,
            None => '\0',
        };
        b += 1;
    }
    table
}

/// The byte a character of the mapping stands for, or `None` for characters
/// outside it.
pub fn char_to_byte(c: char) -> Option<u8> {
    let code = u32::from(c);
    if code < 256 && is_printable(code) {
        return u8::try_from(code).ok();
    }
    if !(256..256 + 68).contains(&code) {
        return None;
    }
    let rank = code - 256;
    // The rank-th byte that is not printable.
    let mut seen = 0u32;
    for b in 0u32..256 {
        if !is_printable(b) {
            if seen == rank {
                return u8::try_from(b).ok();
            }
            seen += 1;
        }
    }
    None
}

/// Table form of [`char_to_byte`] for the 324 code points below 324.
pub fn char_to_byte_table() -> [Option<u8>; 324] {
    let mut table = [None; 324];
    for (b, c) in BYTE_TO_CHAR.iter().enumerate() {
        if let (Some(slot), Ok(b)) = (table.get_mut(*c as usize), u8::try_from(b)) {
            *slot = Some(b);
        }
    }
    table
}

/// The bytes a string of mapped characters stands for, or `None` if a
/// character is outside the mapping.
pub fn unmap(text: &str, table: &[Option<u8>; 324]) -> Option<Vec<u8>> {
    text.chars()
        .map(|c| table.get(c as usize).copied().flatten())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_is_a_bijection_with_gpt2_anchors() {
        assert_eq!(BYTE_TO_CHAR[usize::from(b' ')], 'Ġ');
        assert_eq!(BYTE_TO_CHAR[usize::from(b'\n')], 'Ċ');
        assert_eq!(BYTE_TO_CHAR[usize::from(b'A')], 'A');
        assert_eq!(BYTE_TO_CHAR[0xAD], 'Ń');
        let table = char_to_byte_table();
        for b in 0..=255u8 {
            let c = BYTE_TO_CHAR[usize::from(b)];
            assert_eq!(char_to_byte(c), Some(b));
            assert_eq!(table[c as usize], Some(b));
        }
        assert_eq!(char_to_byte('€'), None);
    }
}
