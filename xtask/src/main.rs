//! berth's development tasks.

fn main() {}
