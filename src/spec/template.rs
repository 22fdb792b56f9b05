//! [`TemplateText`]: a spec string that may hold template syntax, kept with where it came from
//! and rendered per host later; and the budget every render gets ([`render_bounded`]): at most
//! [`FUEL`] units of minijinja fuel (time and memory) and [`MAX_RENDERED`] bytes of output, so a
//! template with nested loops fails fast instead of hanging `validate` or `plan`. Every
//! minijinja environment cairn makes, in the loader and in `module::Templater`, gets its budget
//! here. A leaf of the spec layer: it imports only spans from `diagnostic` (and minijinja).

use std::io;

use minijinja::{Environment, ErrorKind, Value};

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

/// The minijinja fuel one render may use: about one unit per instruction and one per 64 bytes
/// of data it makes. The templates of the etcd module use under 300 each, so a template would
/// have to do three thousand times their work to reach it; a debug build burns the whole budget
/// in a fraction of a second.
pub const FUEL: u64 = 1_000_000;

/// The largest text one render may produce: 16 MiB. Every value cairn renders becomes a file,
/// a unit or a command line on a host; anything larger is a runaway template.
pub const MAX_RENDERED: usize = 16 << 20;

/// Sets cairn's rendering budget ([`FUEL`]) on `env`. Every [`Environment`] cairn makes goes
/// through this; [`render_bounded`] adds the size cap.
pub fn with_budget(env: &mut Environment<'_>) {
    env.set_fuel(Some(FUEL));
}

/// Renders `source` (named `name` in errors) with `env` and `context`, stopping as soon as the
/// output passes [`MAX_RENDERED`] bytes (a `WriteFailure`, see [`budget_exceeded`]) or the fuel
/// set by [`with_budget`] runs out (`OutOfFuel`).
pub fn render_bounded(env: &Environment<'_>, name: &str, source: &str, context: Value) -> Result<String, minijinja::Error> {
    let template = env.template_from_named_str(name, source)?;
    let mut out = Capped { buf: Vec::new() };
    template.render_captured_to(context, &mut out)?;
    Ok(String::from_utf8(out.buf).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
}

/// Which part of the budget a render error used up, in words (with the limit's size), or `None`
/// for any other template error.
pub fn budget_exceeded(err: &minijinja::Error) -> Option<String> {
    match err.kind() {
        ErrorKind::OutOfFuel => Some(format!("it ran out of its rendering budget ({FUEL} units of minijinja fuel)")),
        ErrorKind::WriteFailure => Some(format!("its output passed the size limit of {} MiB", MAX_RENDERED >> 20)),
        _ => None,
    }
}

/// An output that refuses to grow past [`MAX_RENDERED`] bytes.
struct Capped {
    buf: Vec<u8>,
}

impl io::Write for Capped {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() + data.len() > MAX_RENDERED {
            return Err(io::Error::other("rendered text passed the size limit"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Environment<'static> {
        let mut env = Environment::new();
        with_budget(&mut env);
        env
    }

    #[test]
    fn nested_loops_run_out_of_fuel() {
        let text = "{% for a in range(10000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}";
        let err = render_bounded(&env(), "t", text, Value::UNDEFINED).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::OutOfFuel);
        assert!(budget_exceeded(&err).unwrap().contains("1000000 units"));
    }

    #[test]
    fn expressions_have_the_budget_too() {
        // `[[assert]]` checks are expressions: sorting 10^5 items three times costs more fuel
        // than one render may use.
        let env = env();
        let expr = env.compile_expression("range(100000) | sort | sort(reverse=true) | sort | length").unwrap();
        assert_eq!(expr.eval(Value::UNDEFINED).unwrap_err().kind(), ErrorKind::OutOfFuel);
        assert_eq!(
            Environment::new().compile_expression("range(10) | sort | length").unwrap().eval(Value::UNDEFINED).unwrap(),
            Value::from(10)
        );
    }

    #[test]
    fn output_past_the_cap_is_refused() {
        // Without fuel the size cap alone must stop it.
        let text = "{% for a in range(20000) %}{{ 'y' * 1000 }}{% endfor %}";
        let err = render_bounded(&Environment::new(), "t", text, Value::UNDEFINED).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::WriteFailure);
        assert!(budget_exceeded(&err).unwrap().contains("16 MiB"));
        let ok = render_bounded(&env(), "t", "{% for a in range(3) %}{{ a }}{% endfor %}\n", Value::UNDEFINED).unwrap();
        assert_eq!(ok, "012");
    }
}
