//! Positions in the user's source text, for error messages.

use crate::Error;

/// 1-based (line, column) of byte offset `offset` in `src`; columns count
/// characters, as editors do.
pub(crate) fn line_column(src: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(src.len());
    let before = src.get(..offset).unwrap_or(src);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// A grammar error at byte offset `offset` of `src`.
pub(crate) fn error_at(src: &str, offset: usize, message: impl Into<String>) -> Error {
    let (line, column) = line_column(src, offset);
    Error::grammar(line, column, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_columns_are_one_based_in_characters() {
        let src = "ab\nçd\ne";
        assert_eq!(line_column(src, 0), (1, 1));
        assert_eq!(line_column(src, 2), (1, 3));
        assert_eq!(line_column(src, 3), (2, 1));
        assert_eq!(line_column(src, 5), (2, 2)); // after the 2-byte 'ç'
        assert_eq!(line_column(src, 99), (3, 2));
    }
}
