//! [`TemplateText`]: a spec string that may hold template syntax, kept with where it came from
//! and rendered per host later. A leaf of the spec layer: it imports only spans from `diagnostic`.

use super::diagnostic::Span;

/// A string that may contain template syntax, rendered per host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateText {
    /// The template source.
    pub text: String,
    /// Where it came from: the TOML string, or the template file (whole file span).
    pub span: Span,
    /// A name for error messages: the template file path, or `file.motd.content`.
    pub name: String,
}
