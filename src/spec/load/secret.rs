//! Reading a secret source (`content = { env = … }`, `{ file = … }`, `{ command = [ … ] }`) on
//! the machine running cairn, for a file's content or a module's `string` input. A problem points
//! at the source as written: an unset variable, an unreadable file, a command that cannot start or
//! fails (its status and stderr, never its stdout), never at the value.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::reader::TableReader;
use crate::spec::diagnostic::{Diagnostic, Diagnostics, Located};
use crate::spec::model::{ContentSource, ResourceBody, ResourceSpec};
use crate::spec::module::InputDecl;
use crate::spec::secret::{Secret, SecretBytes, SecretSource};

const KEYS: [&str; 3] = ["env", "file", "command"];

/// The secret that the inline table `r` names, read now.
pub(super) fn read(mut r: TableReader<'_, '_>, base: &Path, d: &mut Diagnostics) -> Option<Secret> {
    let env = r.optional_string("env", d);
    let file = r.optional_string("file", d);
    let command = r.string_list("command", d);
    let mut given: Vec<(&str, crate::spec::Span)> = Vec::new();
    given.extend(env.as_ref().map(|e| ("env", e.span.clone())));
    given.extend(file.as_ref().map(|f| ("file", f.span.clone())));
    given.extend(command.as_ref().map(|c| ("command", c.span.clone())));
    let what = r.what().to_string();
    let span = r.span().clone();
    let near_miss = r.near_miss(&KEYS);
    r.finish(d);
    match given.as_slice() {
        [] => {
            if !near_miss {
                d.push(
                    Diagnostic::at(&span, format!("{what} names no secret source"))
                        .with_label("needs `env`, `file` or `command`")
                        .with_help(
                            "write content = { env = \"NAME\" }, { file = \"~/secrets/x\" } or { command = [\"pass\", \"show\", \"x\"] }",
                        ),
                );
            }
            return None;
        }
        [_] => {}
        [(first, first_span), rest @ ..] => {
            for (k, s) in rest {
                d.push(
                    Diagnostic::at(s, format!("{what} sets both `{first}` and `{k}`"))
                        .with_label(format!("`{k}` set here"))
                        .with_related(first_span, format!("`{first}` set here"))
                        .with_help("a secret comes from one source: keep one of `env`, `file`, `command`"),
                );
            }
            return None;
        }
    }
    if let Some(name) = env {
        return from_env(name, d);
    }
    if let Some(file) = file {
        return from_file(file, base, d);
    }
    command.and_then(|argv| from_command(argv, d))
}

/// A module's `string` input given as a secret source (`token = { env = "ETCD_TOKEN" }`): the
/// text, with one final line ending removed (as `pass show` or `echo` leave it), and the secret.
pub(super) fn read_input(r: TableReader<'_, '_>, base: &Path, decl: &InputDecl, d: &mut Diagnostics) -> Option<(String, Secret)> {
    let what = r.what().to_string();
    let secret = read(r, base, d)?;
    let Ok(mut text) = String::from_utf8(secret.value.expose().to_vec()) else {
        d.push(
            Diagnostic::at(&secret.span, format!("{what}: the {} is not UTF-8 text", secret.source))
                .with_label("a `string` input holds text")
                .with_help("give the input text, or write the secret into a file with `content = { ... }` instead"),
        );
        return None;
    };
    for ending in ["\r\n", "\n"] {
        if let Some(stripped) = text.strip_suffix(ending) {
            text.truncate(stripped.len());
            break;
        }
    }
    if let Some(one_of) = &decl.one_of
        && !one_of.value.contains(&serde_json::Value::String(text.clone()))
    {
        d.push(
            Diagnostic::at(&secret.span, format!("{what}: the {} gives a value that is not allowed", secret.source))
                .with_label(format!("expected {} (the value read is not shown)", decl.constraints()))
                .with_related(&one_of.span, "the allowed values are listed here")
                .with_help(format!("make the secret {}", decl.constraints())),
        );
        return None;
    }
    let value = SecretBytes::new(text.clone().into_bytes());
    Some((text, Secret { value, ..secret }))
}

/// Marks `sensitive` every file among `resources` (one module instance's) whose content template
/// names one of the instance's secret inputs: its content is then never shown. (A secret that
/// reaches any other rendered value is refused when the graph is built.)
pub(super) fn mark_sensitive(resources: &mut [ResourceSpec], secret_inputs: &[String]) {
    if secret_inputs.is_empty() {
        return;
    }
    for res in resources {
        if let ResourceBody::File(f) = &mut res.body
            && let ContentSource::Template(t) = &f.content
            && secret_inputs.iter().any(|name| names_word(&t.text, name))
        {
            f.sensitive = true;
        }
    }
}

/// Whether `word` occurs in `text` as a whole identifier (`inputs.token`, `inputs["token"]`).
fn names_word(text: &str, word: &str) -> bool {
    let ident = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    text.match_indices(word).any(|(at, _)| !ident(text[..at].chars().next_back()) && !ident(text[at + word.len()..].chars().next()))
}

fn from_env(name: Located<String>, d: &mut Diagnostics) -> Option<Secret> {
    match std::env::var_os(&name.value) {
        Some(v) => {
            use std::os::unix::ffi::OsStringExt as _;
            Some(Secret { source: SecretSource::Env(name.value), span: name.span, value: SecretBytes::new(v.into_vec()) })
        }
        None => {
            d.push(
                Diagnostic::at(&name.span, format!("environment variable `{}` is not set", name.value))
                    .with_label("read on this machine when the spec is loaded")
                    .with_help(format!("export {}=... before running cairn (it is needed by plan and apply alike)", name.value)),
            );
            None
        }
    }
}

/// `~` and `~/…` from `$HOME`; a relative path from the spec's folder.
fn resolve(written: &str, base: &Path) -> Option<PathBuf> {
    if written == "~" || written.starts_with("~/") {
        let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
        return Some(PathBuf::from(home).join(written.trim_start_matches('~').trim_start_matches('/')));
    }
    Some(base.join(written))
}

fn from_file(file: Located<String>, base: &Path, d: &mut Diagnostics) -> Option<Secret> {
    let Some(path) = resolve(&file.value, base) else {
        d.push(
            Diagnostic::at(&file.span, format!("cannot expand `~` in `{}`", file.value))
                .with_label("HOME is not set")
                .with_help("set HOME, or write the absolute path"),
        );
        return None;
    };
    match super::read_bytes(&path) {
        Ok(bytes) => {
            Some(Secret { source: SecretSource::File { written: file.value, path }, span: file.span, value: SecretBytes::new(bytes) })
        }
        Err(why) => {
            d.push(
                Diagnostic::at(&file.span, format!("cannot read secret file `{}`", file.value))
                    .with_label(format!("{why}: {}", path.display()))
                    .with_help("the file is read on this machine when the spec is loaded; `~` is your home, other relative paths start at the spec's folder"),
            );
            None
        }
    }
}

/// At most this much of a failing command's stderr is quoted.
const STDERR_QUOTED: usize = 400;

fn from_command(argv: Located<Vec<Located<String>>>, d: &mut Diagnostics) -> Option<Secret> {
    let words: Vec<String> = argv.value.iter().map(|w| w.value.clone()).collect();
    let Some((program, args)) = words.split_first() else {
        d.push(
            Diagnostic::at(&argv.span, "`command` of a secret is empty")
                .with_label("needs a program and its arguments")
                .with_help("write command = [\"pass\", \"show\", \"etcd/token\"]"),
        );
        return None;
    };
    let shown = words.join(" ");
    let out = Command::new(program).args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).output();
    match out {
        Ok(out) if out.status.success() => {
            Some(Secret { source: SecretSource::Command(words), span: argv.span, value: SecretBytes::new(out.stdout) })
        }
        Ok(out) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let stderr = stderr.trim();
            let quoted: String = stderr.chars().take(STDERR_QUOTED).collect();
            let status = match out.status.code() {
                Some(c) => format!("exit status {c}"),
                None => "killed by a signal".to_string(),
            };
            let label = if quoted.is_empty() { format!("{status}, nothing on stderr") } else { format!("{status}: {quoted}") };
            d.push(
                Diagnostic::at(&argv.span, format!("secret command `{shown}` failed"))
                    .with_label(label)
                    .with_help("the command runs on this machine (no shell) when the spec is loaded; its stdout is the secret"),
            );
            None
        }
        Err(e) => {
            d.push(
                Diagnostic::at(&argv.span, format!("cannot run secret command `{shown}`"))
                    .with_label(match e.kind() {
                        std::io::ErrorKind::NotFound => format!("no such program: {program}"),
                        _ => format!("{e}: {program}"),
                    })
                    .with_help("the program is looked up in PATH on this machine; install it or write its full path"),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_word_matches_whole_identifiers() {
        assert!(super::names_word("--token={{ inputs.token }}", "token"));
        assert!(super::names_word("{{ inputs['token'] }}", "token"));
        assert!(!super::names_word("{{ inputs.token_file }}", "token"));
        assert!(!super::names_word("{{ inputs.mytoken }}", "token"));
    }
}
