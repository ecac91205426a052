//! A configuration that could not be loaded, located in its file.

use std::ops::Range;
use std::path::PathBuf;

/// A configuration that could not be loaded, with where in the file it went wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is not valid, at a known place.
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong, in one line.
        message: String,
    },
}

/// A problem found by validation: where in the text (byte range) and what.
pub(super) type Invalid = (Range<usize>, String);

/// Collapses a multi-line parser message into one line.
pub(super) fn one_line(s: &str) -> String {
    s.trim().replace('\n', "; ")
}

/// 1-based line and column of byte `offset` in `text`.
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, column)
}
