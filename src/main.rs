//! The `vigil` binary: parses arguments and wires the stages together.
fn main() {}
