//! cairn: declarative infrastructure as code for clustered services.
//!
//! The flow, one module per arrow: a TOML spec is loaded and validated ([`spec`]), modules are
//! expanded and templates rendered per host ([`module`]), resource instances (resource × host) are
//! ordered into a dependency graph ([`graph`]), every host is read with one batched probe and each
//! instance is diffed purely against what was observed ([`resource`]), the result is a [`plan::Plan`]
//! that renders as text or JSON, and [`apply`] executes it in dependency order, re-checking each
//! change before it acts. Hosts are reached through [`transport`]; [`lab`] makes local test hosts;
//! [`cli`] is the only layer that prints.

pub mod apply;
pub mod cli;
pub mod graph;
pub mod hash;
pub mod lab;
pub mod module;
pub mod plan;
pub mod resource;
pub mod spec;
pub mod state;
pub mod transport;
