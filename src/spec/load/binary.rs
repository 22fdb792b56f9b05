//! Reading a `[binary.NAME]` table: the url (checked for a supported scheme when it is not
//! templated), the required sha256, and exactly one of `extract` (archive members → absolute
//! destinations) or `path` (the downloaded file as it is), plus mode, owner, group and the
//! optional `version_command`. Every problem is a [`Diagnostic`] at the value that caused it.

use toml::de::DeValue;

use super::reader::{TableReader, type_phrase};
use super::{is_templated, read_path};
use crate::spec::diagnostic::{Diagnostic, Diagnostics, Located};
use crate::spec::model::{BinaryFiles, BinarySpec, ResourceId, TemplateText};

/// Url schemes cairn can fetch.
pub(crate) const SCHEMES: &[&str] = &["https://", "http://", "file://"];

/// Whether `url` starts with a supported scheme (case-insensitive).
pub(crate) fn supported_scheme(url: &str) -> bool {
    SCHEMES.iter().any(|s| url.get(..s.len()).is_some_and(|p| p.eq_ignore_ascii_case(s)))
}

/// The diagnostic for a url whose scheme cairn cannot fetch.
pub(crate) fn bad_scheme(url: &str, span: &crate::spec::Span) -> Diagnostic {
    let scheme = url.split_once("://").map_or("", |(s, _)| s);
    let message =
        if scheme.is_empty() { format!("url `{url}` has no scheme") } else { format!("unsupported url scheme `{scheme}` in `{url}`") };
    Diagnostic::at(span, message)
        .with_label("expected https://, http:// or file://")
        .with_help("download with https:// (or http://), or use file:///absolute/path for a file on this machine")
}

/// Reads the kind-specific keys of a `[binary.*]` table.
pub(super) fn read(r: &mut TableReader<'_, '_>, id: &ResourceId, d: &mut Diagnostics) -> Option<BinarySpec> {
    let url = r.required_string("url", "\"https://example.com/tool-1.0-linux-amd64.tar.gz\"", d);
    let url = url.and_then(|u| {
        if !is_templated(&u.value) && !supported_scheme(&u.value) {
            d.push(bad_scheme(&u.value, &u.span));
            return None;
        }
        Some(TemplateText { text: u.value, span: u.span, name: format!("{id}.url") })
    });
    let sha256 = read_sha256(r, d);
    let files = read_files(r, id, d);
    let mode = r.optional_mode("mode", d);
    let owner = r.optional_string("owner", d);
    let group = r.optional_string("group", d);
    let version_command = read_version_command(r, id, d);
    let optional = read_optional(r, files.as_ref(), d);
    Some(BinarySpec {
        url: url?,
        sha256: sha256?,
        files: files?,
        mode,
        owner,
        group,
        version_command: version_command.ok()?,
        cache_dir: std::path::PathBuf::new(),
        optional: optional?,
    })
}

/// `optional`: members of `extract` an archive may lack (a newer release's extra tool).
fn read_optional(r: &mut TableReader<'_, '_>, files: Option<&BinaryFiles>, d: &mut Diagnostics) -> Option<Vec<String>> {
    let Some(list) = r.string_list("optional", d) else { return if r.get("optional").is_some() { None } else { Some(Vec::new()) } };
    let members: Vec<&str> = match files {
        Some(BinaryFiles::Extract(m)) => m.iter().map(|(name, _)| name.value.as_str()).collect(),
        _ => Vec::new(),
    };
    let mut ok = true;
    for item in &list.value {
        if !members.contains(&item.value.as_str()) {
            ok = false;
            d.push(
                Diagnostic::at(&item.span, format!("`{}` in `optional` is not a member of `extract`", item.value))
                    .with_label("not extracted")
                    .with_help(format!(
                        "`optional` names members of `extract` that some releases lack; extract lists: {}",
                        if members.is_empty() { "nothing".to_string() } else { members.join(", ") }
                    )),
            );
        }
    }
    ok.then(|| list.value.into_iter().map(|i| i.value).collect())
}

fn read_sha256(r: &mut TableReader<'_, '_>, d: &mut Diagnostics) -> Option<Located<String>> {
    let sum = r.required_string("sha256", "\"<64 hex digits>\"", d)?;
    // A template (a module input, a var) is checked after rendering.
    if is_templated(&sum.value) {
        return Some(sum);
    }
    let hex = sum.value.trim().to_ascii_lowercase();
    let hex = hex.strip_prefix("sha256:").unwrap_or(&hex).to_string();
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Some(Located::new(hex, sum.span));
    }
    let found = if hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        format!("{} hex digits", hex.len())
    } else {
        "characters that are not hex digits".to_string()
    };
    d.push(
        Diagnostic::at(&sum.span, format!("`sha256` in {} must be 64 hex digits", r.what()))
            .with_label(format!("found {found}"))
            .with_help("copy the sha256 from the release's checksum file (e.g. `sha256sum FILE`): 64 characters 0-9a-f"),
    );
    None
}

fn read_files(r: &mut TableReader<'_, '_>, id: &ResourceId, d: &mut Diagnostics) -> Option<BinaryFiles> {
    let extract_span = r.get("extract").map(|(span, _)| span);
    let path_span = r.get("path").map(|(span, _)| span);
    match (extract_span, path_span) {
        (Some(e), Some(p)) => {
            d.push(
                Diagnostic::at(&p, format!("{} sets both `extract` and `path`", r.what()))
                    .with_label("`path` set here")
                    .with_related(&e, "`extract` set here")
                    .with_help("use `extract` to install members of an archive, or `path` to install the downloaded file as it is"),
            );
            None
        }
        (None, None) => {
            if !r.near_miss(&["extract", "path"]) {
                d.push(
                    Diagnostic::at(r.span(), format!("{} says nothing to install", r.what()))
                        .with_label("needs `extract` or `path`")
                        .with_help(
                            "add extract = { \"tool\" = \"/usr/local/bin/tool\" } for an archive, or path = \"/usr/local/bin/tool\" for a single file",
                        ),
                );
            }
            None
        }
        (None, Some(_)) => read_path(r, id, d).map(BinaryFiles::Path),
        (Some(_), None) => read_extract(r, id, d),
    }
}

fn read_extract(r: &mut TableReader<'_, '_>, id: &ResourceId, d: &mut Diagnostics) -> Option<BinaryFiles> {
    let mut table = r.table("extract", format!("`extract` of {}", r.what()), d)?;
    let mut out = Vec::new();
    let mut ok = true;
    for (member, value) in table.rest() {
        let DeValue::String(dest) = value.get_ref() else {
            d.push(
                Diagnostic::at(
                    &table.at(value.span()),
                    format!("destination of `{}` must be a string, found {}", member.value, type_phrase(value.get_ref())),
                )
                .with_label("expected an absolute path")
                .with_help(format!("write \"{}\" = \"/usr/local/bin/{}\"", member.value, member.value)),
            );
            ok = false;
            continue;
        };
        let span = table.at(value.span());
        if member.value.is_empty() || member.value.starts_with('/') || member.value.split('/').any(|c| c == "..") {
            d.push(
                Diagnostic::at(&member.span, format!("`{}` is not a valid archive member", member.value))
                    .with_label("a member path inside the archive")
                    .with_help("name the member relative to the archive's top folder, e.g. \"etcd\" or \"bin/tool\", without `..`"),
            );
            ok = false;
        }
        if !dest.starts_with('/') && !dest.trim_start().starts_with("{{") {
            d.push(
                Diagnostic::at(&span, format!("destination of `{}` must be absolute", member.value))
                    .with_label("a relative path")
                    .with_help(format!("write the full path on the host, starting with `/`, e.g. \"/usr/local/bin/{}\"", member.value)),
            );
            ok = false;
            continue;
        }
        let text = TemplateText { text: dest.to_string(), span, name: format!("{id}.extract.{}", member.value) };
        out.push((member, text));
    }
    if out.is_empty() && ok {
        d.push(
            Diagnostic::at(table.span(), format!("`extract` of {} is empty", r.what()))
                .with_label("extracts nothing")
                .with_help("list at least one member: extract = { \"tool\" = \"/usr/local/bin/tool\" }"),
        );
        return None;
    }
    ok.then_some(BinaryFiles::Extract(out))
}

/// `Err(())` when written but invalid (reported), `Ok(None)` when absent.
fn read_version_command(r: &mut TableReader<'_, '_>, id: &ResourceId, d: &mut Diagnostics) -> Result<Option<Vec<TemplateText>>, ()> {
    let Some(list) = r.string_list("version_command", d) else {
        return if r.get("version_command").is_some() { Err(()) } else { Ok(None) };
    };
    if list.value.is_empty() {
        d.push(Diagnostic::at(&list.span, "`version_command` is empty").with_label("no program").with_help(
            "give the program and its arguments, e.g. version_command = [\"/usr/local/bin/etcd\", \"--version\"], or remove it",
        ));
        return Err(());
    }
    let mut bad = false;
    for item in &list.value {
        if item.value.is_empty() || item.value.contains(['\t', '\n', '\r', '\0', '\u{1f}']) {
            d.push(
                Diagnostic::at(&item.span, "`version_command` arguments must be non-empty and free of control characters")
                    .with_label("not usable as an argument")
                    .with_help("remove the empty argument or the tab/newline in it"),
            );
            bad = true;
        }
    }
    if bad {
        Err(())
    } else {
        let name = format!("{id}.version_command");
        Ok(Some(list.value.into_iter().map(|i| TemplateText { text: i.value, span: i.span, name: name.clone() }).collect()))
    }
}
