//! `cairn schema`: the JSON Schema of a spec file (made by the spec layer from the same key lists
//! the loader checks), printed for editors with a TOML language server (taplo, Even Better TOML).
//! `docs/spec.schema.json` is this output, and a test keeps the two equal.
#![allow(clippy::print_stderr)]

use std::io::Write as _;
use std::process::ExitCode;

/// The schema as pretty-printed JSON with a final newline.
pub fn schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&crate::spec::json_schema()).unwrap_or_default();
    text.push('\n');
    text
}

/// `cairn schema`: the schema on stdout.
pub fn run_schema() -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(schema_text().as_bytes()).and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: cannot write the schema: {e}");
            ExitCode::FAILURE
        }
    }
}
