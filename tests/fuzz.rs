//! Fuzzing on the stable toolchain, as a normal part of `cargo test` (issue 15). A seeded
//! mutation loop (`fastrand` with fixed seeds, so a run is reproducible) starts from the seed
//! corpus — every example, module example, test fixture and inline error-test spec
//! (`tests/fuzz/corpus/spec/`, collected by `tests/common/corpus.rs`), probe outputs made from
//! real graphs (`tests/fuzz/corpus/probe/`), nftables JSON and manifests — and mutates bytes,
//! lines and tokens. An input whose outcome is new (another set of error kinds, another plan
//! shape) joins the pool, a cheap stand-in for coverage guidance. Targets:
//!
//! - `spec`: `spec::load_str` as if read from the seed's own path (so includes, modules and
//!   template files resolve), then `Graph::build` (every template rendered), a plan per host
//!   from empty facts, and the rendered errors or plan.
//! - `module`: a module's `module.toml` (the etcd module and its test fixture), mutated inside
//!   a copy of the module, and a spec using it loaded, built, planned and rendered.
//! - `templates`: every `.j2` template of the repository, mutated and rendered with a module's
//!   context through `Templater` (the rendering budget included), errors rendered with carets.
//! - `probe`: the bytes a (hostile or broken) host could send as probe output: parsed, and
//!   when they parse, planned against the etcd example's graph and rendered.
//! - `saved_plan`: plan files read back (`SavedPlan::read`), rendered and compared with a fresh
//!   plan, as `cairn show` and `cairn apply FILE` do.
//! - `host_output`: the other parsers of what hosts say: nftables JSON, manifests, the SSH
//!   session line, the batched file read (through a fake transport).
//!
//! Every target must not panic and must take under a second per input; each session is bounded
//! in iterations and time so the file runs in under a minute and a half on 2 cores in a debug
//! build. A panic saves its input under `target/fuzz-crashes/`; once fixed, the input goes into
//! `tests/fuzz/corpus/<target>/` as a regression seed. For a longer run by hand,
//! `CAIRN_FUZZ_ITERATIONS=N`, `CAIRN_FUZZ_SECONDS=N` and `CAIRN_FUZZ_SEED=N` set every session's
//! iteration count, time limit and random seed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stderr)]

#[path = "common/corpus.rs"]
mod corpus;
#[path = "common/files.rs"]
mod files;
use files::copy_dir;

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cairn::graph::Graph;
use cairn::module::{Templater, module_context};
use cairn::plan::Plan;
use cairn::plan::planner::plan_from_facts;
use cairn::plan::render::{self, TextOptions};
use cairn::resource::probe::parse_probe_output;
use cairn::resource::{HostFacts, ProbeRequest};
use cairn::spec::{Diagnostics, SourceMap, Span, TemplateText, load, load_str};

/// Longest time one input may take.
const MAX_INPUT_TIME: Duration = Duration::from_secs(1);

/// Largest input the mutator makes.
const MAX_LEN: usize = 256 * 1024;

/// The repository root (tests run there).
fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// ---------------------------------------------------------------- the mutation loop

/// What one session did.
#[derive(Debug, Default)]
struct Report {
    executions: usize,
    crashes: Vec<PathBuf>,
    slow: Vec<(Duration, PathBuf)>,
    longest: Duration,
    longest_len: usize,
    largest: usize,
    outcomes: usize,
    accepted: usize,
}

/// Runs `target` on every seed, then on `iterations` mutants (stopping early after `time`),
/// keeping mutants with a new outcome (the string `target` returns) in the pool.
fn session(name: &str, seeds: Vec<Vec<u8>>, dict: &[&str], iterations: usize, time: Duration, target: impl Fn(&[u8]) -> String) -> Report {
    assert!(!seeds.is_empty(), "{name}: no seeds");
    let env = |var: &str| std::env::var(var).ok().and_then(|n| n.parse::<u64>().ok());
    let iterations = env("CAIRN_FUZZ_ITERATIONS").and_then(|n| usize::try_from(n).ok()).unwrap_or(iterations);
    let time = env("CAIRN_FUZZ_SECONDS").map_or(time, Duration::from_secs);
    let mut rng = fastrand::Rng::with_seed(env("CAIRN_FUZZ_SEED").unwrap_or(0xCA1E) ^ name.len() as u64);
    let mut pool = seeds.clone();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut report = Report::default();
    let started = Instant::now();
    let total = seeds.len() + iterations;
    for i in 0..total {
        if i >= seeds.len() && started.elapsed() > time {
            break;
        }
        let input = if i < seeds.len() {
            seeds[i].clone()
        } else {
            // Half the time a seed itself, so real inputs stay the main source of mutants.
            let base = if rng.bool() { &seeds[rng.usize(..seeds.len())] } else { &pool[rng.usize(..pool.len())] };
            mutate(&mut rng, base, &pool, dict)
        };
        let t0 = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| target(&input)));
        let took = t0.elapsed();
        report.executions += 1;
        report.largest = report.largest.max(input.len());
        if took > report.longest {
            report.longest = took;
            report.longest_len = input.len();
        }
        match outcome {
            Ok(sig) => {
                if sig.starts_with("ok") || sig.starts_with("plan") {
                    report.accepted += 1;
                }
                if took > MAX_INPUT_TIME {
                    report.slow.push((took, save_crash(name, &input)));
                }
                if seen.insert(sig) && i >= seeds.len() && pool.len() < 4000 {
                    pool.push(input);
                }
            }
            Err(_) => report.crashes.push(save_crash(name, &input)),
        }
    }
    report.outcomes = seen.len();
    eprintln!(
        "fuzz {name}: {} executions in {:.1}s ({} seeds), {} accepted (parsed, or loaded and planned), {} distinct outcomes, {} crashes, {} over {MAX_INPUT_TIME:?}, \
         longest input {:.3}s ({} bytes), largest input {} bytes",
        report.executions,
        started.elapsed().as_secs_f64(),
        seeds.len(),
        report.accepted,
        report.outcomes,
        report.crashes.len(),
        report.slow.len(),
        report.longest.as_secs_f64(),
        report.longest_len,
        report.largest,
    );
    report
}

/// Fails the test when the session crashed or was slow, naming the saved inputs.
fn assert_clean(name: &str, report: &Report) {
    assert!(report.crashes.is_empty(), "{name}: {} panics; inputs saved as {:?}", report.crashes.len(), report.crashes);
    assert!(report.slow.is_empty(), "{name}: inputs over {MAX_INPUT_TIME:?}: {:?}", report.slow);
}

fn save_crash(name: &str, input: &[u8]) -> PathBuf {
    let dir = repo().join("target/fuzz-crashes").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(&cairn::hash::sha256_hex(input)[..16]);
    std::fs::write(&path, input).unwrap();
    path
}

/// Bytes that parsers treat specially.
const INTERESTING_BYTES: &[u8] = b"\0\xff\n\r\t \"'\\[]{}%#=.,:;-+/*|()<>0159\x1f\xc3\x80";

/// Numbers at the edges.
const INTERESTING_NUMBERS: &[&str] = &[
    "0",
    "-1",
    "1",
    "255",
    "256",
    "4095",
    "65535",
    "65536",
    "2147483648",
    "-9223372036854775808",
    "18446744073709551616",
    "1e309",
    "0777",
    "99999999999999999999",
];

/// One to four stacked mutations of `input`: bit flips, interesting bytes, deletions,
/// duplications, dictionary tokens, splices with another pool entry, line edits, numbers.
fn mutate(rng: &mut fastrand::Rng, input: &[u8], pool: &[Vec<u8>], dict: &[&str]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..rng.usize(1..=4) {
        let pos = |rng: &mut fastrand::Rng, v: &Vec<u8>| rng.usize(..=v.len());
        match rng.u8(0..11) {
            0 if !v.is_empty() => {
                let i = rng.usize(..v.len());
                v[i] ^= 1 << rng.u8(0..8);
            }
            1 if !v.is_empty() => {
                let i = rng.usize(..v.len());
                v[i] = INTERESTING_BYTES[rng.usize(..INTERESTING_BYTES.len())];
            }
            2 if !v.is_empty() => {
                let a = rng.usize(..v.len());
                let b = (a + rng.usize(1..=64)).min(v.len());
                v.drain(a..b);
            }
            3 if !v.is_empty() => {
                let a = rng.usize(..v.len());
                let b = (a + rng.usize(1..=256)).min(v.len());
                let chunk = v[a..b].to_vec();
                let at = pos(rng, &v);
                v.splice(at..at, chunk.iter().copied());
            }
            4 | 5 if !dict.is_empty() => {
                let token = dict[rng.usize(..dict.len())].as_bytes();
                let at = pos(rng, &v);
                v.splice(at..at, token.iter().copied());
            }
            6 => {
                let other = &pool[rng.usize(..pool.len())];
                let a = pos(rng, &v);
                let b = rng.usize(..=other.len());
                v.truncate(a);
                v.extend_from_slice(&other[b..]);
            }
            7 => {
                let mut lines: Vec<Vec<u8>> = v.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
                let n = lines.len();
                let (i, j) = (rng.usize(..n), rng.usize(..n));
                match rng.u8(0..3) {
                    0 => {
                        lines.remove(i);
                    }
                    1 => {
                        let l = lines[i].clone();
                        lines.insert(j, l);
                    }
                    _ => lines.swap(i, j),
                }
                v = lines.join(&b'\n');
            }
            8 => {
                let digits: Vec<usize> = v.iter().enumerate().filter(|(_, b)| b.is_ascii_digit()).map(|(i, _)| i).collect();
                if let Some(&start) = digits.get(rng.usize(..digits.len().max(1))) {
                    let end = v[start..].iter().position(|b| !b.is_ascii_digit()).map_or(v.len(), |n| start + n);
                    let n = INTERESTING_NUMBERS[rng.usize(..INTERESTING_NUMBERS.len())].as_bytes();
                    v.splice(start..end, n.iter().copied());
                }
            }
            9 => {
                let at = pos(rng, &v);
                v.truncate(at);
            }
            _ => {
                // Repeat a short slice many times (deep nesting, long lines).
                if !v.is_empty() {
                    let a = rng.usize(..v.len());
                    let b = (a + rng.usize(1..=8)).min(v.len());
                    let chunk = v[a..b].repeat(rng.usize(2..=200));
                    v.splice(a..a, chunk);
                }
            }
        }
    }
    v.truncate(MAX_LEN);
    v
}

/// A short, stable description of error text: each `error:` line with quoted parts, numbers and
/// paths taken out, so equal kinds of errors compare equal.
fn shape(text: &str) -> String {
    let mut out = BTreeSet::new();
    for line in text.lines().filter(|l| l.starts_with("error") || l.starts_with("warning")) {
        let mut s = String::new();
        let mut quoted = None;
        for c in line.chars() {
            match quoted {
                Some(q) if c == q => quoted = None,
                Some(_) => {}
                None if c == '`' || c == '"' => quoted = Some(c),
                None if c.is_ascii_digit() => {}
                None => s.push(c),
            }
        }
        out.insert(s.chars().take(100).collect::<String>());
    }
    out.into_iter().collect::<Vec<_>>().join("|")
}

fn files_under(dir: &Path, keep: &dyn Fn(&Path) -> bool, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut paths: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            files_under(&path, keep, out);
        } else if keep(&path) {
            out.push(path);
        }
    }
}

fn corpus_dir(target: &str) -> PathBuf {
    repo().join("tests/fuzz/corpus").join(target)
}

fn corpus_files(target: &str) -> Vec<Vec<u8>> {
    let mut paths = Vec::new();
    files_under(&corpus_dir(target), &|_| true, &mut paths);
    paths.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

// ---------------------------------------------------------------- spec

/// Every spec seed as `# fuzz-base: PATH` and its text, PATH relative to the repository.
fn spec_seeds() -> Vec<Vec<u8>> {
    let mut paths = Vec::new();
    for dir in ["examples", "modules", "tests/fixtures"] {
        files_under(Path::new(dir), &|p| p.extension().is_some_and(|e| e == "toml"), &mut paths);
    }
    let mut seeds: Vec<Vec<u8>> = paths
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            format!("{}{}\n{text}", corpus::BASE_PREFIX, p.display()).into_bytes()
        })
        .collect();
    seeds.extend(corpus_files("spec"));
    seeds
}

/// The path a spec seed is loaded as: its `# fuzz-base:` line when that names a spec seed's
/// path (a mutated one falls back to `cairn.toml`), and the text.
fn split_base(input: &[u8], bases: &BTreeSet<String>) -> (PathBuf, String) {
    let text = String::from_utf8_lossy(input).into_owned();
    let base = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix(corpus::BASE_PREFIX))
        .filter(|b| bases.contains(*b))
        .map_or_else(|| PathBuf::from("cairn.toml"), PathBuf::from);
    (base, text)
}

const SPEC_DICT: &[&str] = &[
    "[hosts.n]\naddress = \"192.0.2.1\"\n",
    "[file.x]\npath = \"/etc/x\"\ncontent = \"{{ host.name }}\"\n",
    "[dir.d]\npath = \"/etc/d\"\n",
    "[unit.u]\nname = \"u.service\"\n",
    "[module.m]\nsource = \"etcd-cluster\"\n",
    "[[assert]]\nthat = \"",
    "[inputs.i]\ntype = \"string\"\n",
    "include = [\"",
    "template = \"",
    "source = \"",
    "hosts = [\"*\"]\n",
    "after = [\"file.x\"]\n",
    "labels = { role = \"etcd\" }\n",
    "{{ ",
    " }}",
    "{% for h in hosts %}",
    "{% endfor %}",
    "{% if ",
    "{% endif %}",
    "{{ vars.",
    "{{ inputs.",
    "| default(",
    "\"\"\"",
    "'''",
    "[[",
    "]]",
    " = ",
    "\n",
    "\\u0000",
    "\\",
    "..",
    "/dev/zero",
    "../",
    "modules/",
    "templates/",
    "ca.",
    "role=etcd",
    "=",
    "*",
    "\u{feff}",
    "\u{202e}",
    "é",
    "🦀",
];

/// Loads, builds the graph, plans each host from empty facts and renders: the outcome's shape.
fn spec_target(input: &[u8], bases: &BTreeSet<String>) -> String {
    let (base, text) = split_base(input, bases);
    build_and_plan(load_str(&base, &text))
}

/// A loaded spec's graph, a plan per host from empty facts, and its views; or the rendered errors.
fn build_and_plan(loaded: Result<cairn::spec::Spec, cairn::spec::LoadError>) -> String {
    let spec = match loaded {
        Ok(spec) => spec,
        Err(e) => return format!("load: {}", shape(&e.render())),
    };
    let graph = match Graph::build(&spec) {
        Ok(g) => g,
        Err(d) => return format!("graph: {}", shape(&d.render(&spec.sources))),
    };
    let mut plan = Plan::for_graph(&graph);
    for host in graph.hosts.keys() {
        plan.hosts.insert(host.clone(), plan_from_facts(&graph, host, &HostFacts::default(), &BTreeMap::new()));
    }
    let text = render::text(&plan, TextOptions { color: false, verbose: true });
    let _ = render::json(&plan);
    format!("plan: {} instances, {} lines", graph.instances.len().min(20), text.lines().count().min(50))
}

#[test]
fn fuzz_spec_loader() {
    let seeds = spec_seeds();
    let bases: BTreeSet<String> = seeds.iter().filter_map(|s| split_base_line(s)).collect();
    let report = session("spec", seeds, SPEC_DICT, 60_000, Duration::from_secs(45), |input| spec_target(input, &bases));
    assert_clean("spec", &report);
}

fn split_base_line(seed: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(seed).ok()?;
    let base = text.lines().next()?.strip_prefix(corpus::BASE_PREFIX)?;
    Some(base.to_string())
}

// ---------------------------------------------------------------- module files

/// The first line of a module seed: `# fuzz-module: NAME`, the module whose `module.toml` it is.
const MODULE_PREFIX: &str = "# fuzz-module: ";

/// A mutated `module.toml` is written into a copy of the module (its templates beside it) and a
/// spec using the module is loaded, built, planned and rendered, as in [`spec_target`].
#[test]
fn fuzz_module_files() {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(Path::new("modules/etcd-cluster"), &tmp.path().join("modules/etcd-cluster"));
    copy_dir(Path::new("tests/fixtures/modules/modules/etcd-cluster"), &tmp.path().join("modules/fixture-etcd"));
    std::fs::copy("modules/etcd-cluster/example.toml", tmp.path().join("etcd-cluster.toml")).unwrap();
    std::fs::write(
        tmp.path().join("fixture-etcd.toml"),
        "[hosts.n1]\naddress = \"192.0.2.1\"\n[module.etcd]\nsource = \"fixture-etcd\"\nhosts = [\"n1\"]\nversion = \"3.5.22\"\n",
    )
    .unwrap();
    let names = ["etcd-cluster", "fixture-etcd"];
    let mut seeds: Vec<Vec<u8>> = names
        .iter()
        .map(|n| {
            let text = std::fs::read_to_string(tmp.path().join("modules").join(n).join("module.toml")).unwrap();
            format!("{MODULE_PREFIX}{n}\n{text}").into_bytes()
        })
        .collect();
    seeds.extend(corpus_files("module"));
    let report = session("module", seeds, SPEC_DICT, 8000, Duration::from_secs(30), |input| {
        let text = String::from_utf8_lossy(input);
        let name = text.lines().next().and_then(|l| l.strip_prefix(MODULE_PREFIX)).filter(|n| names.contains(n)).unwrap_or(names[0]);
        std::fs::write(tmp.path().join("modules").join(name).join("module.toml"), input).unwrap();
        build_and_plan(load(&tmp.path().join(format!("{name}.toml"))))
    });
    assert_clean("module", &report);
}

// ---------------------------------------------------------------- templates

const TEMPLATE_DICT: &[&str] = &[
    "{{ ",
    " }}",
    "{% ",
    " %}",
    "{# ",
    " #}",
    "{%- ",
    " -%}",
    "{% for x in range(100) %}",
    "{% endfor %}",
    "{% if true %}",
    "{% else %}",
    "{% endif %}",
    "{% set x = ",
    "{% macro m(a) %}{{ m(a) }}{% endmacro %}{{ m(1) }}",
    "{% raw %}",
    "{% endraw %}",
    "{% filter upper %}",
    "{% endfilter %}",
    "{% include 'x' %}",
    "{% extends 'x' %}",
    "inputs.",
    "host.name",
    "module.hosts",
    "hosts",
    "vars.",
    "loop.index",
    " | join(',')",
    " | default('d')",
    " | tojson",
    " | sort",
    " | replace('a', 'bb')",
    " * 100000",
    "'x'",
    "[1, 2, 3]",
    "{'a': 1}",
    "range(1000000)",
    "\n",
];

/// Every template file of the repository.
fn template_seeds() -> Vec<Vec<u8>> {
    let mut paths = Vec::new();
    for dir in ["modules", "examples", "tests/fixtures"] {
        files_under(Path::new(dir), &|p| p.extension().is_some_and(|e| e == "j2"), &mut paths);
    }
    let mut seeds: Vec<Vec<u8>> = paths.iter().map(|p| std::fs::read(p).unwrap()).collect();
    seeds.extend(corpus_files("templates"));
    seeds
}

#[test]
fn fuzz_templates() {
    // The context of the etcd module's resources on its first host.
    let spec = load(Path::new("examples/etcd-ha/cairn.toml")).unwrap_or_else(|e| panic!("{}", e.render()));
    let resource = spec.resources.iter().find(|r| r.scope.is_some()).unwrap();
    let host = spec.hosts.values().next().unwrap();
    let ctx = module_context(&spec, host, resource.scope.as_ref().unwrap());
    let templater = Templater::new();
    let report = session("templates", template_seeds(), TEMPLATE_DICT, 60_000, Duration::from_secs(30), |input| {
        let text = String::from_utf8_lossy(input).into_owned();
        let mut sources = SourceMap::default();
        let len = text.len();
        let id = sources.add("templates/fuzz.j2", text.clone());
        let template = TemplateText { text, span: Span::new(id, 0..len), name: "templates/fuzz.j2".into() };
        match templater.render(&template, &ctx, &sources) {
            Ok(out) => format!("ok {}", out.len().checked_ilog2().unwrap_or(0)),
            Err(d) => shape(&Diagnostics::from(d).render(&sources)),
        }
    });
    assert_clean("templates", &report);
}

// ---------------------------------------------------------------- probe

const PROBE_DICT: &[&str] = &[
    "S\t",
    "H\t",
    "UN\t",
    "US\t",
    "UX\t",
    "PW\t",
    "GR\t",
    "C\t",
    "K\t",
    "V\t",
    "FWSSH\t",
    "FWNFT\t",
    "M\t",
    "E\tend\n",
    "\t",
    "\n",
    "regular file",
    "directory",
    "symbolic link",
    "regular empty file",
    "root",
    "  ",
    ":",
    "::",
    "x:",
    "@",
    "=",
    "\u{1f}",
    "LoadState=",
    "ActiveState=",
    "SubState=",
    "UnitFileState=",
    "ActiveEnterTimestamp=",
    "NeedDaemonReload=yes",
    "FragmentPath=",
    "Id=",
    "-----BEGIN CERTIFICATE-----",
    "-----END CERTIFICATE-----",
    "-----BEGIN PUBLIC KEY-----",
    "!unreadable",
    "!noopenssl",
    "json\t",
    "no-nft",
    "error\t",
    "{\"nftables\": [",
    "{\"rule\": {",
    "\"expr\": [",
    "]}",
    "/var/lib/cairn/manifests/",
    "{\"format\":\"cairn-manifest\",\"format_version\":1,",
    "\"resources\":[",
    "\"owns\":\"files\"",
    "\"owns\":\"unit\"",
    "/",
    "/etc/etcd",
    "777",
    "7777",
    "-5",
    "n/a",
    "\u{fffd}",
];

/// Probe seeds: the corpus (outputs made from the graphs of the fuzz graphs by `collect_corpus`)
/// and the raw outputs of the parsers' own tests.
fn probe_seeds() -> Vec<Vec<u8>> {
    let mut seeds = corpus_files("probe");
    seeds.push(b"garbage\nE\tend\n".to_vec());
    seeds.push(b"UN\tx.service\nUX\tSystem has not been booted with systemd \nE\tend\n".to_vec());
    seeds
}

/// The graphs hostile probe output is planned against: the etcd example (every kind of the etcd
/// module on three hosts) and the service example.
/// (The service example's hosts come from `cairn lab up`; two stand-in hosts replace them.)
fn probe_graphs() -> Vec<Graph> {
    let service = Path::new("examples/lab-service/cairn.toml");
    let service_text = std::fs::read_to_string(service)
        .unwrap()
        .replace("include = [\"lab.toml\"]", "[hosts.node1]\naddress = \"192.0.2.11\"\n[hosts.node2]\naddress = \"192.0.2.12\"\n");
    let specs = [load(Path::new("examples/etcd-ha/cairn.toml")), load_str(service, &service_text)];
    specs
        .into_iter()
        .map(|spec| {
            let spec = spec.unwrap_or_else(|e| panic!("{}", e.render()));
            Graph::build(&spec).unwrap_or_else(|d| panic!("{}", d.render(&spec.sources)))
        })
        .collect()
}

/// Parses `input` as probe output; when it parses, plans every host of every graph from it
/// (the diffs read the hostile facts) and renders the plan and the observed-state lines.
fn probe_target(input: &[u8], graphs: &[Graph]) -> String {
    let facts = match parse_probe_output(&String::from_utf8_lossy(input)) {
        Ok(f) => f,
        Err(e) => return format!("err {}", format!("{e:?}").split(['{', '(']).next().unwrap_or_default()),
    };
    let mut sig = String::from("ok");
    for graph in graphs {
        let mut plan = Plan::for_graph(graph);
        for host in graph.hosts.keys() {
            let old: BTreeMap<String, Vec<u8>> = facts.paths.keys().map(|p| (p.clone(), b"old\ncontent\n".to_vec())).collect();
            let changes = plan_from_facts(graph, host, &facts, &old);
            plan.hosts.insert(host.clone(), changes);
        }
        let text = render::text(&plan, TextOptions { color: false, verbose: true });
        let _ = render::json(&plan);
        for line in text.lines().filter(|l| l.trim_start().starts_with(['+', '~', '-', '!', '?', '±'])) {
            sig.extend(line.trim_start().chars().next());
        }
        for inst in &graph.instances {
            let mut req = ProbeRequest::default();
            inst.desired.add_to_probe(&mut req);
            let _ = facts.describe(&req);
            let _ = facts.describe_redacted(&req, true);
        }
    }
    sig.chars().take(80).collect()
}

#[test]
fn fuzz_probe_output() {
    let graphs = probe_graphs();
    let report = session("probe", probe_seeds(), PROBE_DICT, 25_000, Duration::from_secs(45), |input| probe_target(input, &graphs));
    assert_clean("probe", &report);
}

// ---------------------------------------------------------------- other host output

/// A host that answers every command with the fuzz input.
struct Answering {
    stdout: Vec<u8>,
    stats: cairn::transport::TransportStats,
}

#[async_trait::async_trait]
impl cairn::transport::Transport for Answering {
    fn host(&self) -> &str {
        "fuzz"
    }

    async fn run(
        &self,
        _argv: &[String],
        _stdin: cairn::transport::Stdin<'_>,
    ) -> Result<cairn::transport::CommandOutput, cairn::transport::TransportError> {
        Ok(cairn::transport::CommandOutput { status: Some(0), stdout: self.stdout.clone(), stderr: Vec::new() })
    }

    fn stats(&self) -> &cairn::transport::TransportStats {
        &self.stats
    }

    async fn close(&self) {}
}

/// Seeds for `host_output`: a first byte choosing the parser (`0` nftables JSON, `1` manifest,
/// `2` SSH session line, `3` batched read), then its input.
fn host_output_seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    let mut nft = Vec::new();
    files_under(Path::new("src/resource/firewall/fixtures"), &|p| p.extension().is_some_and(|e| e == "json"), &mut nft);
    for p in nft {
        seeds.push([b"0".as_slice(), &std::fs::read(p).unwrap()].concat());
    }
    seeds.extend(corpus_files("host_output"));
    seeds.push(b"210.0.0.1 51234 10.0.0.11 22".to_vec());
    seeds.push(b"2fe80::1%eth0 40000 fe80::2 2222".to_vec());
    seeds.push(b"33\nabc-\n0\n2\n\n\xff".to_vec());
    seeds
}

fn host_output_target(input: &[u8], rt: &tokio::runtime::Runtime) -> String {
    let Some((&which, rest)) = input.split_first() else { return "empty".into() };
    let text = String::from_utf8_lossy(rest);
    match which % 4 {
        0 => match cairn::resource::firewall::nft::observed_text(&text) {
            Ok(t) => format!("ok nft {}", t.lines().count().min(30)),
            Err(e) => format!("nft {e}").chars().take(40).collect(),
        },
        1 => match cairn::state::manifest::Manifest::parse(&text) {
            Ok(m) => format!("ok manifest {}", m.to_text().len().min(1)),
            Err(e) => format!("manifest {e}").chars().take(30).collect(),
        },
        2 => {
            if cairn::resource::firewall::lockout::SshSession::parse(&text).is_some() {
                "ok ssh".into()
            } else {
                "ssh none".into()
            }
        }
        _ => {
            let t = Answering { stdout: rest.to_vec(), stats: Default::default() };
            let count = 1 + usize::from(which / 4 % 4);
            let paths: Vec<String> = (0..count).map(|i| format!("/f{i}")).collect();
            match rt.block_on(cairn::transport::read_files(&t, &paths)) {
                Ok(files) => format!("ok read {}", files.iter().filter(|f| f.is_some()).count()),
                Err(e) => format!("read {e}").chars().take(40).collect(),
            }
        }
    }
}

#[test]
fn fuzz_host_output() {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let dict: Vec<&str> =
        PROBE_DICT.iter().copied().chain(["{", "}", "[", "]", "\"", ",", ":", "null", "true", "\"family\"", "\"match\""]).collect();
    let report =
        session("host_output", host_output_seeds(), &dict, 400_000, Duration::from_secs(20), |input| host_output_target(input, &rt));
    assert_clean("host_output", &report);
}

// ---------------------------------------------------------------- saved plans

/// A plan file (`cairn plan -o`) comes back from disk or a CI artifact: `SavedPlan::read` of a
/// mutated one, then what `cairn show` and `cairn apply FILE` do with it (render it, compare it
/// with a fresh plan and its spec reference with the spec now). Seeds: plan files of the etcd
/// example made from each probe seed that parses.
#[test]
fn fuzz_saved_plan() {
    use cairn::plan::saved::{SavedPlan, SpecRef, compare};
    let path = Path::new("examples/etcd-ha/cairn.toml");
    let spec = load(path).unwrap_or_else(|e| panic!("{}", e.render()));
    let graph = Graph::build(&spec).unwrap_or_else(|d| panic!("{}", d.render(&spec.sources)));
    let now = SpecRef::of(&spec, path);
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("plan.cairn");
    let mut fresh = Plan::for_graph(&graph);
    let mut seeds = Vec::new();
    for probe in corpus_files("probe") {
        let Ok(facts) = parse_probe_output(&String::from_utf8_lossy(&probe)) else { continue };
        let mut plan = Plan::for_graph(&graph);
        for host in graph.hosts.keys() {
            plan.hosts.insert(host.clone(), plan_from_facts(&graph, host, &facts, &BTreeMap::new()));
        }
        fresh = plan.clone();
        SavedPlan::new(plan, now.clone(), &["k8s-cluster241".to_string()], &[]).write(&file).unwrap();
        seeds.push(std::fs::read(&file).unwrap());
    }
    seeds.extend(corpus_files("saved_plan"));
    let dict = [
        "{",
        "}",
        "[",
        "]",
        "\"",
        ",",
        ":",
        "null",
        "true",
        "false",
        "\"action\"",
        "\"subject\"",
        "\"reason\"",
        "\"hosts\"",
        "0",
        "-1",
        "\"\"",
    ];
    let report = session("saved_plan", seeds, &dict, 3000, Duration::from_secs(15), |input| {
        std::fs::write(&file, input).unwrap();
        match SavedPlan::read(&file) {
            Ok(saved) => {
                let text = render::text(&saved.plan, TextOptions { color: false, verbose: true });
                let _ = render::json(&saved.plan);
                let moved = compare(&saved.plan, &fresh);
                let changed = saved.spec.changed_files(&now);
                format!("ok {} {} {}", text.lines().count().min(40), moved.len().min(10), changed.len().min(3))
            }
            Err(e) => format!("{e}").split(':').next().unwrap_or_default().chars().filter(|c| !c.is_ascii_digit()).take(60).collect(),
        }
    });
    assert_clean("saved_plan", &report);
}

// ---------------------------------------------------------------- the corpus

/// With `CAIRN_FUZZ_COLLECT` set, (re)writes the probe seeds: for every host of the probe
/// graphs, the output a host would give for its instances' probe requests, as a converged host
/// (every path a file or directory, units running, accounts present, a real certificate and key,
/// a firewall table, this spec's manifest) and as a drifted one (other modes and owners, units
/// stopped, an nft error); and the real probe run on this machine. Without it, checks the corpus
/// is there.
#[test]
fn collect_corpus() {
    if !corpus::collecting() {
        assert!(!corpus_files("spec").is_empty(), "tests/fuzz/corpus/spec is empty: run with CAIRN_FUZZ_COLLECT=1");
        assert!(!corpus_files("probe").is_empty(), "tests/fuzz/corpus/probe is empty: run with CAIRN_FUZZ_COLLECT=1");
        return;
    }
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["node1".to_string()]).unwrap().self_signed(&key).unwrap();
    for graph in probe_graphs() {
        for host in graph.hosts.keys() {
            let mut req = ProbeRequest::default();
            for inst in graph.instances.iter().filter(|i| &i.id.host == host) {
                inst.desired.add_to_probe(&mut req);
            }
            for drifted in [false, true] {
                corpus::keep(
                    "probe",
                    "txt",
                    made_up_probe_output(&req, &graph.spec_name, &cert.pem(), &key.public_key_pem(), drifted).as_bytes(),
                );
            }
        }
    }
    corpus::keep("probe", "txt", local_probe_output(&cert.pem(), &key.serialize_pem()).as_bytes());
    corpus::keep("host_output", "txt", b"1{\"format\":\"cairn-manifest\",\"format_version\":1,\"spec\":\"s\",\"cairn_version\":\"0.1.0\",\"resources\":[{\"id\":\"file.a\",\"owns\":\"files\",\"files\":[{\"path\":\"/a\",\"sha256\":\"ab\"}]},{\"id\":\"firewall.f\",\"owns\":\"firewall\"}]}");
}

/// What a host would answer to `req` (see [`collect_corpus`]).
fn made_up_probe_output(req: &ProbeRequest, spec_name: &str, cert_pem: &str, public_key_pem: &str, drifted: bool) -> String {
    let nft = std::fs::read_to_string("src/resource/firewall/fixtures/etcd.json").unwrap().replace('\n', "");
    let mut out = String::new();
    for (i, p) in req.certs.iter().enumerate() {
        let pem =
            if i % 2 == 0 { cert_pem.to_string() } else { "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_string() };
        for line in pem.lines() {
            out.push_str(&format!("C\t{line}\t{p}\n"));
        }
    }
    for (i, p) in req.keys.iter().enumerate() {
        if drifted && i % 2 == 1 {
            out.push_str(&format!("K\t!unreadable\t{p}\n"));
            continue;
        }
        for line in public_key_pem.lines() {
            out.push_str(&format!("K\t{line}\t{p}\n"));
        }
    }
    let (mode, owner) = if drifted { ("600", "nobody") } else { ("644", "root") };
    for (i, p) in req.paths.iter().enumerate() {
        if i % 3 == 2 {
            out.push_str(&format!("S\tdirectory\t755\t{owner}\troot\t4096\t1700000000\t{p}\n"));
        } else if drifted && i % 3 == 1 {
            out.push_str(&format!("S\tsymbolic link\t777\troot\troot\t7\t1700000000\t{p}\n"));
        } else {
            out.push_str(&format!("S\tregular file\t{mode}\t{owner}\troot\t12\t1800000000\t{p}\n"));
            out.push_str(&format!("H\t{}  {p}\n", cairn::hash::sha256_hex(p.as_bytes())));
        }
    }
    for u in &req.units {
        out.push_str(&format!("UN\t{u}\n"));
    }
    for (i, u) in req.units.iter().enumerate() {
        if i > 0 {
            out.push_str("US\t\n");
        }
        let (active, sub, file, since, reload) = if drifted {
            ("inactive", "dead", "disabled", "@1700000000", "yes")
        } else {
            ("active", "running", "enabled", "Mon 2026-11-30 10:00:00 UTC", "no")
        };
        for prop in [
            format!("Id={u}"),
            "LoadState=loaded".into(),
            format!("ActiveState={active}"),
            format!("SubState={sub}"),
            format!("UnitFileState={file}"),
            format!("ActiveEnterTimestamp={since}"),
            format!("FragmentPath=/etc/systemd/system/{u}"),
            format!("NeedDaemonReload={reload}"),
        ] {
            out.push_str(&format!("US\t{prop}\n"));
        }
    }
    for u in &req.users {
        out.push_str(&format!("PW\t{u}:x:998:997::/var/lib/{u}:/usr/sbin/nologin\n"));
    }
    for g in &req.groups {
        out.push_str(&format!("GR\t{g}:x:997:{g}\n"));
    }
    for v in &req.versions {
        out.push_str(&format!("V\t{}\tetcd Version: {}\n", v.join("\u{1f}"), if drifted { "3.4.23" } else { "3.5.21" }));
    }
    if req.firewall {
        out.push_str("FWSSH\t10.0.0.1 51234 10.0.0.11 22\n");
        if drifted {
            out.push_str("FWNFT\terror\tError: Could not process rule: Operation not permitted\n");
        } else {
            out.push_str(&format!("FWNFT\tjson\t{nft}\n"));
        }
    }
    out.push_str(&format!(
        "M\t/var/lib/cairn/manifests/{spec_name}.json\t{{\"format\":\"cairn-manifest\",\"format_version\":1,\"spec\":\"{spec_name}\",\"cairn_version\":\"0.1.0\",\"resources\":[{{\"id\":\"file.gone\",\"owns\":\"files\",\"files\":[{{\"path\":\"/etc/gone\",\"sha256\":\"ab\"}}]}},{{\"id\":\"dir.d\",\"owns\":\"dir\",\"path\":\"/d\",\"created\":true,\"purge\":false}},{{\"id\":\"unit.old\",\"owns\":\"unit\",\"name\":\"old.service\",\"file\":null}},{{\"id\":\"user.u\",\"owns\":\"user\",\"name\":\"u\",\"remove\":false}}]}}\n"
    ));
    out.push_str("E\tend\n");
    out
}

/// The real probe script's output on this machine, for a request with a file, a directory, a
/// missing path, accounts, a unit, a certificate, a key, a version command and the firewall.
fn local_probe_output(cert_pem: &str, key_pem: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, cert_pem).unwrap();
    std::fs::write(&key, key_pem).unwrap();
    let mut req = ProbeRequest::default();
    std::fs::create_dir(dir.path().join("conf")).unwrap();
    std::fs::write(dir.path().join("conf/motd"), "hello\n").unwrap();
    for p in ["conf", "conf/motd", "missing"] {
        req.paths.insert(dir.path().join(p).display().to_string());
    }
    req.certs.insert(cert.display().to_string());
    req.keys.insert(key.display().to_string());
    req.users.extend(["root".to_string(), "nobody".to_string(), "cairn-no-such-user".to_string()]);
    req.groups.extend(["root".to_string(), "cairn-no-such-group".to_string()]);
    req.units.insert("cairn-no-such.service".to_string());
    req.versions.insert(vec!["uname".to_string(), "-r".to_string()]);
    req.firewall = true;
    req.manifests = true;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let t = cairn::transport::LocalTransport::new("local");
    let probe = req.invocation();
    assert!(probe.stdin.is_empty(), "a small request is an argument");
    let out = rt.block_on(cairn::transport::Transport::run(&t, &probe.argv, cairn::transport::Stdin::Null)).unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!text.contains("PRIVATE KEY"), "{text}");
    text
}
