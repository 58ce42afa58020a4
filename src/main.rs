//! agentctl entry point (skeleton).
fn main() {}
