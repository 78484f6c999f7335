//! The checks the fuzz targets run: the same file the property tests of
//! `intermission-core` use, so that both assert the same invariants.

#[path = "../../core/tests/invariants/mod.rs"]
pub mod invariants;
