//! A typed reader over one parsed TOML table: it hands out values with their positions, records
//! which keys were asked for, and turns every problem (wrong type, missing key, unknown key) into a
//! [`Diagnostic`] instead of stopping, so a whole spec is judged in one pass.

use toml::Spanned;
use toml::de::{DeString, DeTable, DeValue};

use crate::spec::diagnostic::{Diagnostic, Diagnostics, FileId, Located, Span, did_you_mean};
use crate::spec::model::Mode;

/// A parsed TOML value with its byte range.
pub(super) type Value<'i> = Spanned<DeValue<'i>>;

/// "a string", "an integer", … for messages.
/// `value` as a table; otherwise records "WHAT must be a table, found …" pointing at it, with `help`
/// saying how to write it.
pub(super) fn expect_table<'t, 'i>(
    span: Span,
    value: &'t DeValue<'i>,
    what: &str,
    help: String,
    d: &mut Diagnostics,
) -> Option<&'t DeTable<'i>> {
    match value {
        DeValue::Table(table) => Some(table),
        other => {
            d.push(
                Diagnostic::at(&span, format!("{what} must be a table, found {}", type_phrase(other)))
                    .with_label("expected a table")
                    .with_help(help),
            );
            None
        }
    }
}

pub(super) fn type_phrase(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

#[cfg(test)]
thread_local! {
    /// Every key asked for on this thread, with the asking reader's name in messages: the schema
    /// test compares them with the schema's keys.
    pub(super) static ASKED: std::cell::RefCell<Vec<(String, &'static str)>> = const { std::cell::RefCell::new(Vec::new()) };
    /// How each key was read on this thread (which typed reader, with its bounds or choices), for
    /// the schema test to compare with the schema's types.
    pub(super) static READS: std::cell::RefCell<Vec<(String, &'static str, Read)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Which typed reader read a key (test builds only).
#[cfg(test)]
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Read {
    Str,
    Bool,
    Int(i64, i64),
    Seconds(u64, u64),
    Mode,
    Choice(Vec<&'static str>),
    List,
    Table,
}

/// Reads one table, collecting problems into a [`Diagnostics`].
pub(super) struct TableReader<'t, 'i> {
    file: FileId,
    /// The table's own span (its `[header]`, or the inline table).
    span: Span,
    /// How the table is named in messages, e.g. `[file.motd]`.
    what: String,
    entries: Vec<(&'t Spanned<DeString<'i>>, &'t Value<'i>)>,
    used: Vec<bool>,
    asked: Vec<&'static str>,
}

impl<'t, 'i> TableReader<'t, 'i> {
    /// A reader over `table`, written at `span`, named `what` in messages.
    pub(super) fn new(file: FileId, table: &'t DeTable<'i>, span: Span, what: impl Into<String>) -> Self {
        let entries: Vec<_> = table.iter().collect();
        let used = vec![false; entries.len()];
        Self { file, span, what: what.into(), entries, used, asked: Vec::new() }
    }

    /// The span of the table itself.
    pub(super) fn span(&self) -> &Span {
        &self.span
    }

    /// The table's name in messages.
    pub(super) fn what(&self) -> &str {
        &self.what
    }

    /// A byte range of this file as a [`Span`].
    pub(super) fn at(&self, range: std::ops::Range<usize>) -> Span {
        Span::new(self.file, range)
    }

    /// The raw value of `key` (marking it read) and the key's span.
    pub(super) fn get(&mut self, key: &'static str) -> Option<(Span, &'t Value<'i>)> {
        if !self.asked.contains(&key) {
            self.asked.push(key);
        }
        #[cfg(test)]
        ASKED.with(|a| a.borrow_mut().push((self.what.clone(), key)));
        let i = self.entries.iter().position(|(k, _)| k.get_ref().as_ref() == key)?;
        self.used[i] = true;
        let (k, v) = self.entries[i];
        Some((self.at(k.span()), v))
    }

    /// Every entry not read yet, marking them read (for free-form tables such as `[hosts]`).
    pub(super) fn rest(&mut self) -> Vec<(Located<String>, &'t Value<'i>)> {
        let mut out = Vec::new();
        for (i, (k, v)) in self.entries.iter().enumerate() {
            if !self.used[i] {
                out.push((Located::new(k.get_ref().to_string(), self.at(k.span())), *v));
            }
        }
        self.used.iter_mut().for_each(|u| *u = true);
        out
    }

    #[cfg(test)]
    fn note(&self, key: &'static str, read: Read) {
        READS.with(|r| r.borrow_mut().push((self.what.clone(), key, read)));
    }

    fn wrong_type(&self, key: &str, v: &Value<'i>, expected: &str, help: String) -> Diagnostic {
        Diagnostic::at(&self.at(v.span()), format!("`{key}` in {} must be {expected}, found {}", self.what, type_phrase(v.get_ref())))
            .with_label(format!("expected {expected}"))
            .with_help(help)
    }

    /// A string value, or `None` (with a diagnostic when present but not a string).
    pub(super) fn optional_string(&mut self, key: &'static str, d: &mut Diagnostics) -> Option<Located<String>> {
        #[cfg(test)]
        self.note(key, Read::Str);
        let (_, v) = self.get(key)?;
        self.as_string(key, v, d)
    }

    fn as_string(&self, key: &str, v: &Value<'i>, d: &mut Diagnostics) -> Option<Located<String>> {
        match v.get_ref() {
            DeValue::String(s) => Some(Located::new(s.to_string(), self.at(v.span()))),
            _ => {
                d.push(self.wrong_type(key, v, "a string", format!("put the value in double quotes: {key} = \"...\"")));
                None
            }
        }
    }

    /// A string value that must be present.
    pub(super) fn required_string(&mut self, key: &'static str, example: &str, d: &mut Diagnostics) -> Option<Located<String>> {
        if self.get(key).is_none() {
            if !self.near_miss(&[key]) {
                d.push(self.missing(key, example));
            }
            return None;
        }
        self.optional_string(key, d)
    }

    /// Whether a key not read yet looks like a misspelling of one of `keys` (then the unknown-key
    /// diagnostic says "did you mean", and a "missing" diagnostic would only repeat it).
    pub(super) fn near_miss(&self, keys: &[&str]) -> bool {
        self.entries.iter().zip(&self.used).any(|((k, _), used)| {
            !*used && !keys.contains(&k.get_ref().as_ref()) && did_you_mean(k.get_ref(), keys.iter().copied()).is_some()
        })
    }

    /// The diagnostic for a required key that is absent.
    pub(super) fn missing(&self, key: &str, example: &str) -> Diagnostic {
        Diagnostic::at(&self.span, format!("{} is missing `{key}`", self.what))
            .with_label(format!("`{key}` is required here"))
            .with_help(format!("add `{key} = {example}` to {}", self.what))
    }

    /// A boolean value.
    pub(super) fn optional_bool(&mut self, key: &'static str, d: &mut Diagnostics) -> Option<Located<bool>> {
        #[cfg(test)]
        self.note(key, Read::Bool);
        let (_, v) = self.get(key)?;
        match v.get_ref() {
            DeValue::Boolean(b) => Some(Located::new(*b, self.at(v.span()))),
            _ => {
                d.push(self.wrong_type(key, v, "a boolean", format!("write {key} = true or {key} = false, without quotes")));
                None
            }
        }
    }

    /// A whole number in `min..=max`.
    pub(super) fn optional_int(
        &mut self,
        key: &'static str,
        min: i64,
        max: i64,
        example: i64,
        d: &mut Diagnostics,
    ) -> Option<Located<i64>> {
        #[cfg(test)]
        self.note(key, Read::Int(min, max));
        let (_, v) = self.get(key)?;
        let span = self.at(v.span());
        match v.get_ref() {
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) if (min..=max).contains(&n) => Some(Located::new(n, span)),
                _ => {
                    d.push(
                        Diagnostic::at(&span, format!("`{key}` in {} is out of range", self.what))
                            .with_label(format!("must be between {min} and {max}"))
                            .with_help(format!("write a whole number from {min} to {max}")),
                    );
                    None
                }
            },
            _ => {
                d.push(self.wrong_type(key, v, "an integer", format!("write a whole number without quotes, e.g. {key} = {example}")));
                None
            }
        }
    }

    /// A length of time in whole seconds within `min..=max`: an integer (seconds) or a string
    /// with units (`"2s"`, `"1m"`, `"1h30m"`, see [`crate::spec::duration::parse_seconds`]).
    pub(super) fn optional_seconds(
        &mut self,
        key: &'static str,
        min: u64,
        max: u64,
        example: &str,
        d: &mut Diagnostics,
    ) -> Option<Located<u64>> {
        #[cfg(test)]
        self.note(key, Read::Seconds(min, max));
        let (_, v) = self.get(key)?;
        let span = self.at(v.span());
        let secs = match v.get_ref() {
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix()).ok().and_then(|n| u64::try_from(n).ok()),
            DeValue::String(text) => match crate::spec::duration::parse_seconds(text) {
                Some(secs) => Some(secs),
                None => {
                    d.push(
                        Diagnostic::at(&span, format!("`{key}` in {} is not a length of time", self.what))
                            .with_label("expected seconds with a unit: s, m or h")
                            .with_help(format!("write e.g. {key} = {example}, or a whole number of seconds")),
                    );
                    return None;
                }
            },
            _ => {
                let help = format!("write a whole number of seconds, or a string with units, e.g. {key} = {example}");
                d.push(self.wrong_type(key, v, "an integer or a string", help));
                return None;
            }
        };
        match secs {
            Some(n) if (min..=max).contains(&n) => Some(Located::new(n, span)),
            _ => {
                d.push(
                    Diagnostic::at(&span, format!("`{key}` in {} is out of range", self.what))
                        .with_label(format!("must be between {min} and {max} seconds"))
                        .with_help(format!("write from {min} to {max} seconds (e.g. {example})")),
                );
                None
            }
        }
    }

    /// One of `allowed` (a string).
    pub(super) fn optional_choice(
        &mut self,
        key: &'static str,
        allowed: &[&'static str],
        d: &mut Diagnostics,
    ) -> Option<Located<&'static str>> {
        #[cfg(test)]
        self.note(key, Read::Choice(allowed.to_vec()));
        let s = self.optional_string(key, d)?;
        choice_of(s, key, allowed, d)
    }

    /// A list of strings; each wrong element is reported on its own.
    pub(super) fn string_list(&mut self, key: &'static str, d: &mut Diagnostics) -> Option<Located<Vec<Located<String>>>> {
        #[cfg(test)]
        self.note(key, Read::List);
        let (_, v) = self.get(key)?;
        let DeValue::Array(items) = v.get_ref() else {
            d.push(self.wrong_type(key, v, "an array of strings", format!("write a list in brackets, e.g. {key} = [\"...\"]")));
            return None;
        };
        let mut out = Vec::new();
        for item in items.iter() {
            match item.get_ref() {
                DeValue::String(s) => out.push(Located::new(s.to_string(), self.at(item.span()))),
                other => d.push(
                    Diagnostic::at(
                        &self.at(item.span()),
                        format!("items of `{key}` in {} must be strings, found {}", self.what, type_phrase(other)),
                    )
                    .with_label("expected a string")
                    .with_help("put each item in double quotes"),
                ),
            }
        }
        Some(Located::new(out, self.at(v.span())))
    }

    /// A sub-table, read by its own reader.
    pub(super) fn table(&mut self, key: &'static str, what: String, d: &mut Diagnostics) -> Option<TableReader<'t, 'i>> {
        #[cfg(test)]
        self.note(key, Read::Table);
        let (_, v) = self.get(key)?;
        match v.get_ref() {
            DeValue::Table(t) => Some(TableReader::new(self.file, t, self.at(v.span()), what)),
            _ => {
                d.push(self.wrong_type(key, v, "a table", format!("write a table, e.g. {key} = {{ name = \"value\" }}")));
                None
            }
        }
    }

    /// A Unix mode written as a string of 3 or 4 octal digits.
    pub(super) fn optional_mode(&mut self, key: &'static str, d: &mut Diagnostics) -> Option<Mode> {
        #[cfg(test)]
        self.note(key, Read::Mode);
        let (_, v) = self.get(key)?;
        let span = self.at(v.span());
        match v.get_ref() {
            DeValue::String(s) => match parse_mode(s) {
                Some(m) => Some(m),
                None => {
                    let mut diag = Diagnostic::at(&span, format!("`{s}` is not a valid mode")).with_label("expected 3 or 4 octal digits");
                    diag = match s.strip_prefix("0o").and_then(parse_mode) {
                        Some(m) => diag.with_help(format!("write it without the `0o` prefix: {key} = \"{m}\"")),
                        None => diag.with_help(format!("write the mode as octal digits 0-7 in quotes, e.g. {key} = \"0644\"")),
                    };
                    d.push(diag);
                    None
                }
            },
            DeValue::Integer(i) => {
                // What the user probably meant, for the help line: the digits they wrote.
                let digits = i.as_str();
                let meant = if i.radix() == 8 || i.radix() == 10 { parse_mode(digits) } else { None };
                let example = meant.map_or_else(|| "0644".to_string(), |m| m.to_string());
                let why = match (i.radix(), digits.parse::<u32>()) {
                    (10, Ok(n)) => format!(" (unquoted, {digits} is a decimal number: as a mode it would be {n:o})"),
                    _ => String::new(),
                };
                d.push(
                    Diagnostic::at(&span, format!("`{key}` in {} must be a string of octal digits", self.what))
                        .with_label("a number, not a mode string")
                        .with_help(format!("write it in quotes: {key} = \"{example}\"{why}")),
                );
                None
            }
            _ => {
                d.push(self.wrong_type(key, v, "a string", format!("write the mode as octal digits in quotes, e.g. {key} = \"0644\"")));
                None
            }
        }
    }

    /// Reports every key that was never asked for, with a "did you mean".
    pub(super) fn finish(self, d: &mut Diagnostics) {
        for (i, (k, v)) in self.entries.iter().enumerate() {
            if self.used[i] {
                continue;
            }
            let name = k.get_ref().as_ref();
            let noun = if v.get_ref().is_table() { "table" } else { "key" };
            let mut diag = Diagnostic::at(&self.at(k.span()), format!("unknown {noun} `{name}` in {}", self.what));
            let synonym = OTHER_TOOLS_NAMES.iter().find(|(other, ours)| *other == name && self.asked.contains(ours)).map(|(_, ours)| *ours);
            diag = match (synonym, did_you_mean(name, self.asked.iter().copied())) {
                (Some(ours), _) if v.get_ref().is_table() => diag
                    .with_label(format!("cairn calls this `{ours}`"))
                    .with_help(format!("write it as [{ours}.NAME] (docs/spec.md lists every kind)")),
                (_, Some(m)) => diag.with_label(format!("did you mean `{m}`?")).with_help(format!("rename it to `{m}`, or remove it")),
                (_, None) => {
                    diag.with_label(format!("unknown {noun}")).with_help(format!("{} accepts: {}", self.what, quote_list(&self.asked)))
                }
            };
            d.push(diag);
        }
    }
}

/// What other tools (Ansible, pyinfra, Terraform, systemd) call a cairn kind: an unknown table of
/// that name points at cairn's.
const OTHER_TOOLS_NAMES: &[(&str, &str)] = &[
    ("service", "unit"),
    ("systemd", "unit"),
    ("systemd_unit", "unit"),
    ("template", "file"),
    ("copy", "file"),
    ("directory", "dir"),
    ("certificate", "cert"),
    ("tls", "cert"),
    ("account", "user"),
    ("nftables", "firewall"),
    ("iptables", "firewall"),
    ("health", "check"),
    ("healthcheck", "check"),
    ("get_url", "binary"),
    ("download", "binary"),
    ("modules", "module"),
];

/// `` `a`, `b`, `c` `` for help lines.
pub(super) fn quote_list(items: &[&str]) -> String {
    items.iter().map(|a| format!("`{a}`")).collect::<Vec<_>>().join(", ")
}

/// Parses 3 or 4 octal digits ("644", "0644", "4755").
pub(super) fn parse_mode(s: &str) -> Option<Mode> {
    if !(3..=4).contains(&s.len()) || !s.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    u32::from_str_radix(s, 8).ok().map(Mode)
}

/// Converts a TOML value into JSON for template variables.
pub(super) fn to_json(file: FileId, v: &Value<'_>, d: &mut Diagnostics) -> serde_json::Value {
    use serde_json::Value as J;
    match v.get_ref() {
        DeValue::String(s) => J::String(s.to_string()),
        DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) => J::from(n),
            Err(_) => {
                d.push(
                    Diagnostic::at(&Span::new(file, v.span()), "integer is too large")
                        .with_help("use a number that fits in 64 bits, or a string"),
                );
                J::Null
            }
        },
        DeValue::Float(f) => match f.as_str().parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
            Some(n) => J::Number(n),
            None => {
                d.push(
                    Diagnostic::at(&Span::new(file, v.span()), format!("`{}` cannot be used as a template value", f.as_str()))
                        .with_help("use a finite number, or a string"),
                );
                J::Null
            }
        },
        DeValue::Boolean(b) => J::Bool(*b),
        DeValue::Datetime(dt) => J::String(dt.to_string()),
        DeValue::Array(items) => J::Array(items.iter().map(|i| to_json(file, i, d)).collect()),
        DeValue::Table(t) => J::Object(t.iter().map(|(k, v)| (k.get_ref().to_string(), to_json(file, v, d))).collect()),
    }
}

/// `s` when it is one of `allowed` (as the value of `key`), else a diagnostic with a suggestion.
pub(super) fn choice_of(s: Located<String>, key: &str, allowed: &[&'static str], d: &mut Diagnostics) -> Option<Located<&'static str>> {
    if let Some(found) = allowed.iter().find(|a| **a == s.value) {
        return Some(Located::new(*found, s.span));
    }
    let list = allowed.iter().map(|a| format!("\"{a}\"")).collect::<Vec<_>>().join(", ");
    let mut diag = Diagnostic::at(&s.span, format!("`{}` is not a valid `{key}`", s.value)).with_label(format!("expected one of {list}"));
    diag = match did_you_mean(&s.value, allowed.iter().copied()) {
        Some(m) => diag.with_help(format!("did you mean `{key} = \"{m}\"`?")),
        None => diag.with_help(format!("write one of {list}")),
    };
    d.push(diag);
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(parse_mode("644"), Some(Mode(0o644)));
        assert_eq!(parse_mode("0755"), Some(Mode(0o755)));
        assert_eq!(parse_mode("4755"), Some(Mode(0o4755)));
        assert_eq!(parse_mode("999"), None);
        assert_eq!(parse_mode("0o644"), None);
        assert_eq!(parse_mode("64"), None);
        assert_eq!(parse_mode("00644"), None);
    }
}
