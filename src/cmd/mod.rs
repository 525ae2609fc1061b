//! One module per subcommand: each turns its typed arguments into work on the library crates.

pub mod bench;
pub mod collect;
pub mod hash;
pub mod index;
pub mod replay;
pub mod rules;
pub mod run;
pub mod search;
pub mod serve;
pub mod verify;

/// Exit code for a usage error: bad arguments, a file that cannot be read.
pub const EXIT_USAGE: u8 = 2;
