//! The `berth` binary: glue over the berth libraries.

fn main() {}
