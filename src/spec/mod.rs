//! The spec layer: reads a TOML spec (and the files it includes) into a validated [`Spec`],
//! reporting every problem at once with file:line:col. Knows nothing of hosts or SSH.

pub mod diagnostic;
pub mod duration;
pub mod firewall;
mod host;
mod id;
mod load;
pub mod model;
pub mod module;
pub mod pki;
pub mod secret;
pub mod template;

pub use diagnostic::{Diagnostic, Diagnostics, FileId, Located, SourceMap, Span};
pub use duration::Duration;
pub use firewall::FirewallSpec;
pub use host::{HostKeyChecking, HostSpec, Selector, SshDefaults, TransportKind};
pub use id::{Kind, ResourceId};
pub use load::{LoadError, VarInputs, load, load_module, load_str, load_str_with_vars, load_with_vars, module_roots};
pub(crate) use load::{binary_bad_scheme, binary_url_scheme_ok};
pub use model::*;
pub use module::{InputDecl, InputType, ModuleDef, ModuleScope};
pub use pki::*;
pub use secret::{Secret, SecretBytes, SecretSource};
pub use template::TemplateText;
