//! What the `relevo` command does besides serving: the dry run (`relevo route`), the
//! demo backends, running until a signal (or a binary upgrade), and the signals
//! themselves.

pub mod demo;
pub mod dry_run;
pub mod fd_limit;
pub mod names;
pub mod run;
pub mod signals;
pub mod upgrade;
