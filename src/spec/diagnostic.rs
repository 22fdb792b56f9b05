//! User-facing errors about input: a message, where it points (file:line:col with a caret), and
//! what to do about it. Every layer that judges user input (spec, module, graph) reports through
//! `Diagnostic`, so all problems of one run can be collected and printed together.

use std::fmt::Write as _;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Index of a file in a [`SourceMap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct FileId(pub usize);

/// A byte range in one source file.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Span {
    /// The file the range is in.
    pub file: FileId,
    /// Byte offsets into that file's text.
    pub range: Range<usize>,
}

impl Span {
    /// A span in `file` covering `range`.
    pub fn new(file: FileId, range: Range<usize>) -> Self {
        Self { file, range }
    }
}

/// A value together with where it was written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Located<T> {
    /// The value.
    pub value: T,
    /// Where it was written.
    pub span: Span,
}

impl<T> Located<T> {
    /// Wraps `value` found at `span`.
    pub fn new(value: T, span: Span) -> Self {
        Self { value, span }
    }
}

/// Every file read while loading a spec (the spec itself, includes, templates, module files),
/// kept so diagnostics can quote them.
#[derive(Debug, Default, Clone)]
pub struct SourceMap {
    files: Vec<(PathBuf, String)>,
    /// Files read for diagnostics only, not part of the spec (`--var-file`s).
    outside: Vec<FileId>,
}

impl SourceMap {
    /// Registers a file's text and returns its id.
    pub fn add(&mut self, path: impl Into<PathBuf>, text: String) -> FileId {
        self.files.push((path.into(), text));
        FileId(self.files.len() - 1)
    }

    /// Registers a file that is not part of the spec (a `--var-file`): diagnostics can quote it,
    /// but [`files`](Self::files) leaves it out, so it never enters the spec's digest.
    pub fn add_outside(&mut self, path: impl Into<PathBuf>, text: String) -> FileId {
        let id = self.add(path, text);
        self.outside.push(id);
        id
    }

    /// Every file the spec was read from, with its text, in the order read (not the files
    /// registered with [`add_outside`](Self::add_outside)).
    pub fn files(&self) -> impl Iterator<Item = (&Path, &str)> {
        self.files.iter().enumerate().filter(|(i, _)| !self.outside.contains(&FileId(*i))).map(|(_, (p, t))| (p.as_path(), t.as_str()))
    }

    /// The path a file was read from.
    pub fn path(&self, id: FileId) -> &Path {
        self.files.get(id.0).map_or(Path::new("<unknown>"), |f| f.0.as_path())
    }

    /// The text of a file.
    pub fn text(&self, id: FileId) -> &str {
        self.files.get(id.0).map_or("", |f| f.1.as_str())
    }

    /// One-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, id: FileId, offset: usize) -> (usize, usize) {
        let text = self.text(id);
        let offset = floor_char_boundary(text, offset.min(text.len()));
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = text[line_start..offset].chars().count() + 1;
        (line, col)
    }
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while offset > 0 && !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// One problem in the user's input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// What is wrong, in one line.
    pub message: String,
    /// Where; `None` for problems that belong to no position (a missing file, say).
    pub span: Option<Span>,
    /// A short note printed under the caret.
    pub label: Option<String>,
    /// Further places that matter (e.g. the other member of a duplicate), each with a note.
    pub related: Vec<(Span, String)>,
    /// What the user can do about it.
    pub help: Option<String>,
}

impl Diagnostic {
    /// A problem at `span`.
    pub fn at(span: &Span, message: impl Into<String>) -> Self {
        Self { message: message.into(), span: Some(span.clone()), label: None, related: Vec::new(), help: None }
    }

    /// A problem with no position.
    pub fn global(message: impl Into<String>) -> Self {
        Self { message: message.into(), span: None, label: None, related: Vec::new(), help: None }
    }

    /// Adds a note under the caret.
    #[must_use]
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Adds advice on what to do.
    #[must_use]
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Points at another place that matters.
    #[must_use]
    pub fn with_related(mut self, span: &Span, note: impl Into<String>) -> Self {
        self.related.push((span.clone(), note.into()));
        self
    }
}

/// All problems found in one run, in the order found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// Records a problem.
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Moves every problem of `other` into `self`.
    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }

    /// `Ok(value)` when empty, else `Err(self)`.
    pub fn into_result<T>(self, value: T) -> Result<T, Diagnostics> {
        if self.is_empty() { Ok(value) } else { Err(self) }
    }

    /// Renders every problem, sorted by file and position, as `error: ...` blocks with
    /// `--> file:line:col`, the source line and a caret, then a count.
    pub fn render(&self, sources: &SourceMap) -> String {
        let mut sorted: Vec<&Diagnostic> = self.0.iter().collect();
        sorted.sort_by_key(|d| d.span.as_ref().map(|s| (s.file, s.range.start)));
        let mut out = String::new();
        for d in &sorted {
            render_one(&mut out, d, sources);
            out.push('\n');
        }
        let n = sorted.len();
        let _ = writeln!(out, "{} error{} found; nothing was changed on any host.", n, if n == 1 { "" } else { "s" });
        out
    }
}

impl std::fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for d in &self.0 {
            writeln!(f, "error: {}", d.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Self {
        Diagnostics(vec![d])
    }
}

fn render_one(out: &mut String, d: &Diagnostic, sources: &SourceMap) {
    let _ = writeln!(out, "error: {}", d.message);
    if let Some(span) = &d.span {
        render_snippet(out, span, d.label.as_deref(), sources);
    }
    for (span, note) in &d.related {
        render_snippet(out, span, Some(note), sources);
    }
    if let Some(help) = &d.help {
        let gutter = d.span.as_ref().map_or(1, |sp| sources.line_col(sp.file, sp.range.start).0.to_string().len());
        let _ = writeln!(out, "{:gutter$} = help: {help}", "");
    }
}

fn render_snippet(out: &mut String, span: &Span, label: Option<&str>, sources: &SourceMap) {
    let (line, col) = sources.line_col(span.file, span.range.start);
    let gutter = line.to_string().len();
    let _ = writeln!(out, "{:gutter$}--> {}:{}:{}", "", sources.path(span.file).display(), line, col);
    let text = sources.text(span.file);
    let Some(line_text) = text.lines().nth(line - 1) else { return };
    let _ = writeln!(out, "{:gutter$} |", "");
    let _ = writeln!(out, "{line} | {line_text}");
    let line_chars = line_text.chars().count();
    let start = (col - 1).min(line_chars);
    let end_offset = span.range.end.min(text.len());
    let (end_line, end_col) = sources.line_col(span.file, end_offset);
    let width = if end_line == line { (end_col - 1).saturating_sub(start).max(1) } else { line_chars.saturating_sub(start).max(1) };
    let carets = "^".repeat(width);
    let pad = " ".repeat(start);
    match label {
        Some(l) => {
            let _ = writeln!(out, "{:gutter$} | {pad}{carets} {l}", "");
        }
        None => {
            let _ = writeln!(out, "{:gutter$} | {pad}{carets}", "");
        }
    }
}

/// The closest candidate to `word`, for "did you mean" hints.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_caret_under_the_span() {
        let mut map = SourceMap::default();
        let id = map.add("cairn.toml", "[file.a]\nmode = \"999\"\n".to_string());
        let d = Diagnostic::at(&Span::new(id, 16..21), "bad mode").with_help("use an octal mode such as \"0644\"");
        let text = Diagnostics::from(d).render(&map);
        assert_eq!(
            text,
            "error: bad mode\n --> cairn.toml:2:8\n  |\n2 | mode = \"999\"\n  |        ^^^^^\n  = help: use an octal mode such as \"0644\"\n\n1 error found; nothing was changed on any host.\n"
        );
    }

    #[test]
    fn suggests_close_names() {
        assert_eq!(did_you_mean("contnet", ["content", "path", "mode"]), Some("content"));
        assert_eq!(did_you_mean("zzz", ["content", "path"]), None);
    }
}
