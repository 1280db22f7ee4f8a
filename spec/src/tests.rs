//! Tests of the model that need no emulator (the conformance runs against
//! mc2 itself are in `cargo xtask test`).
