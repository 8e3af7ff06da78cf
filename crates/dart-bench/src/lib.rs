//! Helpers shared by the dart-bench binaries (`dart-bench`, `generate`,
//! `engine_wgpu`): see [`common`].
pub mod common;
