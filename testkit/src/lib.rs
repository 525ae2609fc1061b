//! Test support shared by Vigil's crates, as a dev-dependency (`vigil-testkit`):
//!
//! - [`corpus`]: the audit logs captured from OpenBao 2.7.2 that the repository vendors under
//!   `testdata/corpus/` (gzip-compressed), decompressed on first use, and their manifest
//!   (scenarios, salts, known plaintext → HMAC pairs);
//! - [`acceptance`]: the rule pack's acceptance check on the corpus (which rule each attack
//!   scenario must raise, how many alerts stand on setup traffic);
//! - [`openbao`]: a real `bao server -dev` with the audit devices a test asks for;
//! - [`tansu`]: a real Kafka-protocol broker, and a Kafka client independent of Vigil's;
//! - [`vigil`]: the `vigil` binary as child processes (`run`, `serve`, the Kafka roles) and a
//!   client of its HTTP API;
//! - [`process`]: running a command with a time limit, so that a hung child fails its test
//!   instead of stalling it.
//!
//! Every helper that waits has a time limit and panics (failing the test) when it passes.

#![warn(missing_docs)]

pub mod acceptance;
pub mod corpus;
pub mod openbao;
pub mod process;
pub mod tansu;
pub mod vigil;
