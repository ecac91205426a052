//! The checks every section shares: a duration greater than zero, a count at least a
//! minimum, one bound not shorter than another, an HTTP/2 limit within the protocol.

use std::time::Duration;

use toml::Spanned;

use super::error::Invalid;
use super::raw::DurationValue;

/// A bound (`long`, its value and how it was written) that must not be shorter than
/// the duration it bounds (`short`).
pub(super) fn not_shorter(
    short: Duration,
    long: (Duration, &Option<Spanned<DurationValue>>),
    long_name: &str,
    short_name: &str,
) -> Result<(), Invalid> {
    if long.0 >= short {
        return Ok(());
    }
    let span = long.1.as_ref().map_or(0..0, |m| m.span());
    Err((
        span,
        format!("{long_name} must not be shorter than {short_name}"),
    ))
}

pub(super) fn positive(
    v: &Option<Spanned<DurationValue>>,
    default: Duration,
    name: &str,
) -> Result<Duration, Invalid> {
    match v {
        None => Ok(default),
        Some(s) if s.get_ref().0.is_zero() => {
            Err((s.span(), format!("{name} must be greater than zero")))
        }
        Some(s) => Ok(s.get_ref().0),
    }
}

pub(super) fn at_least(
    v: &Option<Spanned<usize>>,
    default: usize,
    min: usize,
    name: &str,
) -> Result<usize, Invalid> {
    match v {
        None => Ok(default),
        Some(s) if *s.get_ref() < min => Err((s.span(), format!("{name} must be at least {min}"))),
        Some(s) => Ok(*s.get_ref()),
    }
}

/// An HTTP/2 limit: at least `min`, and within what the protocol's 31-bit window and
/// stream counts can carry (RFC 9113 §6.9.1).
pub(super) fn h2(
    v: &Option<Spanned<usize>>,
    default: usize,
    min: usize,
    name: &str,
) -> Result<usize, Invalid> {
    let n = at_least(v, default, min, &format!("limits.{name}"))?;
    match v {
        Some(s) if n > (1 << 31) - 1 => Err((
            s.span(),
            format!("limits.{name} must be at most 2147483647"),
        )),
        _ => Ok(n),
    }
}

/// An attempt count: at least 1 (1 = no retry); `None` when not written.
pub(super) fn tries(v: &Option<Spanned<u32>>, name: &str) -> Result<Option<u32>, Invalid> {
    match v {
        Some(t) if *t.get_ref() == 0 => Err((
            t.span(),
            format!("{name} must be at least 1 (1 = no retry)"),
        )),
        t => Ok(t.as_ref().map(|t| *t.get_ref())),
    }
}
