//! Reading a configuration file: text → the serde layer → validation, errors located
//! at file:line:column.

use std::ops::Range;
use std::path::Path;

use super::error::{self, ConfigError};
use super::types::Config;
use super::{raw, validate};

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses and validates configuration text; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let at = |span: Option<Range<usize>>, message: String| {
            let (line, column) = error::line_col(text, span.map_or(0, |s| s.start));
            ConfigError::Invalid {
                path: path.to_owned(),
                line,
                column,
                message,
            }
        };
        let raw: raw::RawConfig =
            toml::from_str(text).map_err(|e| at(e.span(), error::one_line(e.message())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let (mut config, warnings) =
            validate::config(raw, text, base).map_err(|(span, msg)| at(Some(span), msg))?;
        config.warnings = warnings
            .into_iter()
            .map(|(span, msg)| at(Some(span), msg).to_string())
            .collect();
        Ok(config)
    }
}
