//! Snapshot corpus of broken schemas: every file in `tests/schemas/broken/` holds one kind of
//! mistake (one holds several), and the `.expected` file next to it holds the exact
//! diagnostics a user sees for it (message, `file:line:column`, the source line underlined,
//! the help). `tests/schemas/warnings/` holds schemas that load but warn.
//!
//! To create or update the snapshots after a deliberate change to a message, run
//!
//! ```text
//! FANOUT_BLESS=1 cargo test --test api corpus::
//! ```
//!
//! which writes every `.expected` file from the current output instead of comparing; then
//! read the diff of the `.expected` files before committing it. Without `FANOUT_BLESS=1` a
//! missing or different snapshot fails the test.

use std::{
    fs,
    path::{Path, PathBuf},
    time::Duration,
};

use fanout::sdl::{Bindings, Diagnostic, LoadOptions};

fn load(src: &str) -> (Option<Bindings>, Vec<Diagnostic>) {
    fanout::sdl::load(
        src,
        &LoadOptions {
            default_timeout: Duration::from_secs(2),
            env: &|_| None,
        },
    )
}

fn blessing() -> bool {
    std::env::var("FANOUT_BLESS").is_ok_and(|v| v == "1")
}

/// The `.graphql` files of `tests/schemas/<folder>`, sorted, with their repo-relative names.
fn schemas(folder: &str) -> Vec<(String, PathBuf)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/schemas")
        .join(folder);
    let mut files: Vec<(String, PathBuf)> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "graphql"))
        .map(|p| {
            let name = format!(
                "tests/schemas/{folder}/{}",
                p.file_name().unwrap().to_str().unwrap()
            );
            (name, p)
        })
        .collect();
    files.sort();
    // A snapshot whose schema is gone would silently stop being checked.
    for entry in fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "expected") {
            assert!(
                p.with_extension("graphql").exists(),
                "{} has no .graphql next to it",
                p.display()
            );
        }
    }
    files
}

/// Whether `text` names `file` at a line and column that exist in `src`
/// (`file:LINE:COLUMN`, as codespan prints it).
fn mentions_a_position_of(text: &str, file: &str, src: &str) -> bool {
    let lines: Vec<&str> = src.lines().collect();
    let needle = format!("{file}:");
    text.match_indices(&needle).any(|(i, _)| {
        let rest = &text[i + needle.len()..];
        let mut nums = rest.splitn(3, ':');
        let line = nums.next().and_then(|l| l.parse::<usize>().ok());
        let col = nums.next().and_then(|c| {
            let digits: String = c.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<usize>().ok()
        });
        match (line, col) {
            (Some(l), Some(c)) if l >= 1 && l <= lines.len() => {
                c >= 1 && c <= lines[l - 1].chars().count() + 1
            }
            _ => false,
        }
    })
}

/// Loads every schema of `folder`, checks it with `check_load`, and compares (or, when
/// blessing, writes) its rendered diagnostics. Every problem is collected and reported at once.
fn check_corpus(folder: &str, check_load: impl Fn(&str, &(Option<Bindings>, Vec<Diagnostic>))) {
    let files = schemas(folder);
    assert!(!files.is_empty(), "tests/schemas/{folder} holds no schema");
    let mut failures = Vec::new();
    for (name, path) in &files {
        let src = fs::read_to_string(path).unwrap();
        let loaded = load(&src);
        check_load(name, &loaded);
        let diags = &loaded.1;
        assert!(!diags.is_empty(), "{name}: no diagnostic at all");
        for d in diags {
            assert!(
                d.hint.is_some(),
                "{name}: every diagnostic says how to fix it, this one does not: {d:#?}"
            );
        }
        let rendered: String = diags.iter().map(|d| d.render(name, &src)).collect();
        for d in diags {
            let at = format!("{name}:{}:{}", d.line, d.column);
            assert!(
                rendered.contains(&at),
                "{name}: the rendering does not show {at}:\n{rendered}"
            );
        }
        let expected_path = path.with_extension("expected");
        if blessing() {
            fs::write(&expected_path, &rendered).unwrap();
            continue;
        }
        let expected = match fs::read_to_string(&expected_path) {
            Ok(e) => e,
            Err(_) => {
                failures.push(format!(
                    "{name}: no snapshot; run with FANOUT_BLESS=1 to create it. Output:\n{rendered}"
                ));
                continue;
            }
        };
        if !mentions_a_position_of(&expected, name, &src) {
            failures.push(format!(
                "{name}: the snapshot names no line:column of its own file:\n{expected}"
            ));
        }
        if rendered != expected {
            failures.push(format!(
                "{name}: diagnostics differ from the snapshot\n--- expected\n{expected}\n--- actual\n{rendered}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn broken_schemas_match_their_snapshots() {
    check_corpus("broken", |name, (bindings, diags)| {
        assert!(
            bindings.is_none(),
            "{name}: a broken schema loaded; diagnostics: {diags:#?}"
        );
        assert!(
            diags.iter().any(Diagnostic::is_error),
            "{name}: refused without an error: {diags:#?}"
        );
    });
}

#[test]
fn warning_schemas_load_and_match_their_snapshots() {
    check_corpus("warnings", |name, (bindings, diags)| {
        assert!(
            bindings.is_some(),
            "{name}: a schema with only warnings did not load: {diags:#?}"
        );
        assert!(
            !diags.iter().any(Diagnostic::is_error),
            "{name}: an error among the warnings: {diags:#?}"
        );
    });
}

#[test]
fn position_check_rejects_positions_outside_the_file() {
    // The snapshot check above must be able to fail.
    let src = "type Query {\n  a: Int\n}\n";
    let file = "tests/schemas/broken/x.graphql";
    assert!(mentions_a_position_of(
        &format!("  ┌─ {file}:2:3\n"),
        file,
        src
    ));
    assert!(!mentions_a_position_of(
        &format!("  ┌─ {file}:9:1\n"),
        file,
        src
    ));
    assert!(!mentions_a_position_of(
        &format!("  ┌─ {file}:2:40\n"),
        file,
        src
    ));
    assert!(!mentions_a_position_of(
        "  ┌─ other.graphql:2:3\n",
        file,
        src
    ));
}
