//! The `folio` command line.
fn main() {}
