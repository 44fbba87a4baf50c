//! Schema diagnostics: every mistake in `schema.graphql` is reported with its line, column,
//! what is wrong and how to fix it, all at once, and the binary refuses to serve it.

use std::{path::PathBuf, process::Output, time::Duration};

use fanout::sdl::{Bindings, Diagnostic, LoadOptions, Severity};

const UPSTREAM: &str = r#"extend schema @upstream(name: "users", baseUrl: "http://127.0.0.1:9")"#;

fn load(src: &str) -> (Option<Bindings>, Vec<Diagnostic>) {
    fanout::sdl::load(
        src,
        &LoadOptions {
            default_timeout: Duration::from_secs(2),
            env: &|_| None,
        },
    )
}

/// A schema that starts with the `users` upstream on line 1, then `lines`.
fn schema(lines: &[&str]) -> String {
    let mut src = String::from(UPSTREAM);
    for line in lines {
        src.push('\n');
        src.push_str(line);
    }
    src.push('\n');
    src
}

/// 1-based line and column of the only occurrence of `needle` in `src`.
fn at(src: &str, needle: &str) -> (usize, usize) {
    assert_eq!(
        src.matches(needle).count(),
        1,
        "{needle:?} must occur exactly once in the test schema"
    );
    let offset = src.find(needle).unwrap();
    let before = &src[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

/// The one diagnostic whose message contains `fragment`.
fn find<'a>(diags: &'a [Diagnostic], fragment: &str) -> &'a Diagnostic {
    let found: Vec<&Diagnostic> = diags
        .iter()
        .filter(|d| d.message.contains(fragment))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one diagnostic containing {fragment:?}, got {diags:#?}"
    );
    found[0]
}

/// Loading fails and reports an error containing `fragment` at `pos`; returns it.
fn error_at<'a>(
    loaded: &'a (Option<Bindings>, Vec<Diagnostic>),
    fragment: &str,
    pos: (usize, usize),
) -> &'a Diagnostic {
    let (bindings, diags) = loaded;
    assert!(
        bindings.is_none(),
        "a schema with an error loaded: {diags:#?}"
    );
    let d = find(diags, fragment);
    assert_eq!(d.severity, Severity::Error, "{d:#?}");
    assert_eq!((d.line, d.column), pos, "position of {d:#?}");
    d
}

fn hint(d: &Diagnostic) -> &str {
    d.hint
        .as_deref()
        .unwrap_or_else(|| panic!("no hint: {d:#?}"))
}

#[test]
fn graphql_syntax_error_points_at_the_unexpected_token() {
    let src = schema(&[
        "type Query {",
        r#"  user(id: ID!: User @rest(upstream: "users", path: "/users/{args.id}")"#,
        "}",
    ]);
    let loaded = load(&src);
    let (bindings, diags) = &loaded;
    assert!(bindings.is_none());
    assert_eq!(diags.len(), 1, "{diags:#?}");
    let d = &diags[0];
    assert!(d.message.contains("syntax error"), "{d:#?}");
    // The `:` after `ID!`, where `)` was expected.
    assert_eq!((d.line, d.column), at(&src, ": User"), "{d:#?}");
    assert!(d.is_error());
}

#[test]
fn unknown_type_suggests_the_closest_name() {
    let src = schema(&[
        "type Query {",
        r#"  user(id: ID!): Usr @rest(upstream: "users", path: "/users/{args.id}")"#,
        "}",
        "type User { id: ID! }",
    ]);
    let loaded = load(&src);
    let d = error_at(&loaded, "unknown type `Usr`", at(&src, "Usr @rest"));
    assert!(hint(d).contains("did you mean `User`?"), "{d:#?}");
}

#[test]
fn unknown_upstream_suggests_the_declared_one() {
    let src = schema(&[
        "type Query {",
        r#"  user(id: ID!): User @rest(upstream: "user", path: "/users/{args.id}")"#,
        "}",
        "type User { id: ID! }",
    ]);
    let loaded = load(&src);
    let d = error_at(&loaded, r#"unknown upstream "user""#, at(&src, r#""user""#));
    assert!(hint(d).contains(r#"did you mean "users"?"#), "{d:#?}");
}

#[test]
fn duplicate_upstream_is_reported_at_the_second_declaration() {
    let src = [
        "extend schema",
        r#"  @upstream(name: "users", baseUrl: "http://127.0.0.1:9")"#,
        r#"  @upstream(name: "users", baseUrl: "http://127.0.0.1:10")"#,
        "type Query {",
        r#"  user(id: ID!): User @rest(upstream: "users", path: "/users/{args.id}")"#,
        "}",
        "type User { id: ID! }",
    ]
    .join("\n");
    let loaded = load(&src);
    error_at(
        &loaded,
        "upstream `users` is declared twice",
        at(
            &src,
            r#"@upstream(name: "users", baseUrl: "http://127.0.0.1:10")"#,
        ),
    );
    assert_eq!(loaded.1.len(), 1, "{:#?}", loaded.1);
}

#[test]
fn misspelled_directive_suggests_rest() {
    let src = schema(&[
        "type Query {",
        r#"  user(id: ID!): User @rset(upstream: "users", path: "/users/{args.id}")"#,
        "}",
        "type User { id: ID! }",
    ]);
    let loaded = load(&src);
    let d = error_at(&loaded, "unknown directive `@rset`", at(&src, "@rset"));
    assert!(hint(d).contains("did you mean `@rest`?"), "{d:#?}");
}

#[test]
fn misspelled_rest_argument_suggests_path() {
    let src = schema(&[
        "type Query {",
        r#"  user(id: ID!): User @rest(upstream: "users", pth: "/users/{args.id}")"#,
        "}",
        "type User { id: ID! }",
    ]);
    let loaded = load(&src);
    let d = error_at(&loaded, "unknown argument `pth`", at(&src, "pth:"));
    assert!(hint(d).contains("did you mean `path`?"), "{d:#?}");
}

#[test]
fn template_naming_an_undeclared_argument_is_an_error() {
    let src = schema(&[
        "type Query {",
        r#"  user(id: ID!): User @rest(upstream: "users", path: "/users/{args.ids}")"#,
        "}",
        "type User { id: ID! }",
    ]);
    let loaded = load(&src);
    // At the expression itself, as for every other template problem.
    let d = error_at(&loaded, "no argument `ids`", at(&src, "{args.ids}"));
    assert!(d.message.contains("Query.user"), "{d:#?}");
    assert!(hint(d).contains("did you mean `{args.id}`?"), "{d:#?}");
}

#[test]
fn unclosed_template_points_at_its_brace() {
    let src = schema(&[
        "type Query {",
        r#"  user(id: ID!): User @rest(upstream: "users", path: "/users/{args.id")"#,
        "}",
        "type User { id: ID! }",
    ]);
    let loaded = load(&src);
    let d = error_at(&loaded, "unclosed `{`", at(&src, "{args.id\""));
    assert!(hint(d).contains('}'), "{d:#?}");
}

#[test]
fn unset_env_variable_without_default_is_named() {
    let src = [
        r#"extend schema @upstream(name: "users", baseUrl: "{env.FANOUT_TEST_NOT_SET}")"#,
        "type Query {",
        r#"  user(id: ID!): User @rest(upstream: "users", path: "/users/{args.id}")"#,
        "}",
        "type User { id: ID! }",
    ]
    .join("\n");
    let loaded = load(&src);
    let d = error_at(
        &loaded,
        "FANOUT_TEST_NOT_SET",
        at(&src, "{env.FANOUT_TEST_NOT_SET}"),
    );
    assert!(d.message.contains("not set"), "{d:#?}");
    assert!(hint(d).contains("{env.FANOUT_TEST_NOT_SET:-"), "{d:#?}");

    // The same variable with a default loads.
    let with_default = src.replace("NOT_SET}", "NOT_SET:-http://127.0.0.1:9}");
    let (bindings, diags) = load(&with_default);
    assert!(bindings.is_some(), "{diags:#?}");
    assert_eq!(
        bindings.unwrap().upstreams[0].base_url,
        "http://127.0.0.1:9"
    );
}

#[test]
fn bad_duration_is_an_error() {
    let src = schema(&[
        "type Query {",
        r#"  user(id: ID!): User @rest(upstream: "users", path: "/users/{args.id}", timeout: "5 sec")"#,
        "}",
        "type User { id: ID! }",
    ]);
    let loaded = load(&src);
    let d = error_at(&loaded, "bad duration", at(&src, r#""5 sec""#));
    assert!(hint(d).contains("250ms"), "{d:#?}");
}

#[test]
fn bad_method_lists_the_methods() {
    let src = schema(&[
        "type Query {",
        r#"  user(id: ID!): User @rest(upstream: "users", method: FETCH, path: "/users/{args.id}")"#,
        "}",
        "type User { id: ID! }",
    ]);
    let loaded = load(&src);
    let d = error_at(&loaded, "bad `method`", at(&src, "FETCH"));
    assert!(hint(d).contains("GET, POST, PUT, PATCH, DELETE"), "{d:#?}");
}

#[test]
fn body_on_get_is_an_error() {
    let src = schema(&[
        "type Query {",
        r#"  user(id: ID!): User @rest(upstream: "users", path: "/users", body: "{args.id}")"#,
        "}",
        "type User { id: ID! }",
    ]);
    let loaded = load(&src);
    let d = error_at(&loaded, "a body on GET", at(&src, r#""{args.id}""#));
    assert!(hint(d).contains("POST"), "{d:#?}");
}

const BATCH_TYPES: [&str; 5] = [
    "type Query {",
    r#"  order(id: ID!): Order @rest(upstream: "users", path: "/orders/{args.id}")"#,
    "}",
    "type Product { id: ID! }",
    "type Order { id: ID!",
];

#[test]
fn batch_without_match_is_an_error() {
    let mut lines = BATCH_TYPES.to_vec();
    lines.push(r#"  product: Product @rest(upstream: "users", path: "/products", batch: {key: "{parent.productId}", query: "ids"})"#);
    lines.push("}");
    let src = schema(&lines);
    let loaded = load(&src);
    let d = error_at(&loaded, "`match`", at(&src, "{key:"));
    assert!(hint(d).contains("match"), "{d:#?}");
}

#[test]
fn batch_with_no_place_for_its_keys_is_an_error() {
    let mut lines = BATCH_TYPES.to_vec();
    lines.push(r#"  product: Product @rest(upstream: "users", path: "/products", batch: {key: "{parent.productId}", match: "id"})"#);
    lines.push("}");
    let src = schema(&lines);
    let loaded = load(&src);
    let d = error_at(&loaded, "no place for its keys", at(&src, "{key:"));
    assert!(hint(d).contains("query: \"ids\""), "{d:#?}");
    assert!(hint(d).contains("{batch.keys}"), "{d:#?}");
}

#[test]
fn unparsable_select_path_is_an_error() {
    let src = schema(&[
        "type Query {",
        r#"  users: [User] @rest(upstream: "users", path: "/users", select: "data..items")"#,
        "}",
        "type User { id: ID! }",
    ]);
    let loaded = load(&src);
    let d = error_at(&loaded, "`select`", at(&src, r#""data..items""#));
    assert!(hint(d).contains("data.items"), "{d:#?}");
}

#[test]
fn rest_on_an_interface_field_is_an_error() {
    let src = schema(&[
        "type Query {",
        r#"  node(id: ID!): Node @rest(upstream: "users", path: "/nodes/{args.id}")"#,
        "}",
        "interface Node {",
        "  id: ID!",
        r#"  owner: User @rest(upstream: "users", path: "/users/{parent.ownerId}")"#,
        "}",
        "type User implements Node { id: ID! owner: User }",
    ]);
    let loaded = load(&src);
    let d = error_at(
        &loaded,
        "interface field",
        at(
            &src,
            r#"@rest(upstream: "users", path: "/users/{parent.ownerId}")"#,
        ),
    );
    assert!(hint(d).contains("object type"), "{d:#?}");
}

#[test]
fn rest_on_an_input_field_is_an_error() {
    let src = schema(&[
        "type Query {",
        r#"  find(filter: Filter): [User] @rest(upstream: "users", path: "/users")"#,
        "}",
        "input Filter {",
        r#"  team: ID @rest(upstream: "users", path: "/teams")"#,
        "}",
        "type User { id: ID! }",
    ]);
    let loaded = load(&src);
    error_at(
        &loaded,
        "input field",
        at(&src, r#"@rest(upstream: "users", path: "/teams")"#),
    );
}

#[test]
fn non_null_rest_field_is_a_warning_and_still_loads() {
    let src = schema(&[
        "type Query {",
        r#"  user(id: ID!): User @rest(upstream: "users", path: "/users/{args.id}")"#,
        "}",
        "type User {",
        "  id: ID!",
        r#"  team: Team! @rest(upstream: "users", path: "/teams/{parent.teamId}")"#,
        "}",
        "type Team { id: ID! }",
    ]);
    let (bindings, diags) = load(&src);
    assert_eq!(diags.len(), 1, "{diags:#?}");
    let d = &diags[0];
    assert_eq!(d.severity, Severity::Warning, "{d:#?}");
    assert!(d.message.contains("User.team"), "{d:#?}");
    assert_eq!((d.line, d.column), at(&src, "Team! @rest"), "{d:#?}");
    let bindings = bindings.expect("a warning does not stop loading");
    assert!(bindings.object("User").unwrap().fields.contains_key("team"));
}

#[test]
fn every_mistake_in_a_file_is_reported_at_once() {
    let src = [
        r#"extend schema @upstream(name: "users", baseUrl: "http://127.0.0.1:9")"#,
        "type Query {",
        r#"  user(id: ID!): Usr @rest(upstream: "users", path: "/users/{args.id}")"#,
        r#"  team(id: ID!): Team @rest(upstream: "teams", path: "/teams/{args.id}")"#,
        "}",
        "type User { id: ID! }",
        "type Team {",
        "  id: ID!",
        r#"  lead: User @rest(upstream: "users", path: "/users/{parent.leadId}", timeout: "soon")"#,
        r#"  members: [User] @rset(upstream: "users", path: "/teams/{parent.id}/members")"#,
        "}",
    ]
    .join("\n");
    let (bindings, diags) = load(&src);
    assert!(bindings.is_none());
    let positions: Vec<(usize, usize)> = diags.iter().map(|d| (d.line, d.column)).collect();
    assert_eq!(
        positions,
        [
            at(&src, "Usr @rest"),
            at(&src, r#""teams""#),
            at(&src, r#""soon""#),
            at(&src, "@rset"),
        ],
        "{diags:#?}"
    );
    assert_eq!(
        positions.iter().map(|p| p.0).collect::<Vec<_>>(),
        [3, 4, 9, 10]
    );
    assert!(diags.iter().all(Diagnostic::is_error), "{diags:#?}");
    find(&diags, "unknown type `Usr`");
    find(&diags, r#"unknown upstream "teams""#);
    find(&diags, "bad duration");
    find(&diags, "unknown directive `@rset`");
}

// ----- The binary -------------------------------------------------------------------------

const BROKEN: &str = r#"extend schema @upstream(name: "users", baseUrl: "http://127.0.0.1:9")
type Query {
  user(id: ID!): Usr @rest(upstream: "users", path: "/users/{args.id}")
}
type User { id: ID! }
"#;

/// Writes `text` to a file of its own under cargo's temporary directory.
fn temp_schema(name: &str, text: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("diagnostics-{}-{name}.graphql", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs the `fanout` binary with `args`; panics if it has not exited after 10 s.
async fn run(args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_fanout"));
    cmd.args(args)
        .env_remove("FANOUT_SCHEMA")
        .env_remove("FANOUT_LISTEN")
        .env_remove("FANOUT_DEMO")
        .env("RUST_LOG", "info")
        .kill_on_drop(true);
    match tokio::time::timeout(Duration::from_secs(10), cmd.output()).await {
        Ok(out) => out.unwrap(),
        Err(_) => panic!("`fanout {}` was still running after 10 s", args.join(" ")),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn check_command_fails_with_file_line_column() {
    let path = temp_schema("check", BROKEN);
    let file = path.display().to_string();
    let out = run(&["check", "--schema", &file]).await;
    let stderr = text(&out.stderr);
    assert!(
        !out.status.success(),
        "check accepted a broken schema: {stderr}"
    );
    assert!(stderr.contains("error: unknown type `Usr`"), "{stderr}");
    assert!(stderr.contains(&format!("{file}:3:18")), "{stderr}");
    // The source line, with the name underlined, and the hint.
    assert!(stderr.contains("^^^"), "{stderr}");
    assert!(stderr.contains("help: did you mean `User`?"), "{stderr}");

    // The same problem as JSON, on stdout, for editors and CI.
    let out = run(&["check", "--schema", &file, "--format", "json"]).await;
    assert!(!out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json[0]["line"], 3);
    assert_eq!(json[0]["column"], 18);
    assert_eq!(json[0]["severity"], "error");
    assert_eq!(json[0]["file"], file.as_str());

    // The fixed file passes.
    std::fs::write(&path, BROKEN.replace("Usr", "User")).unwrap();
    let out = run(&["check", "--schema", &file]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    std::fs::remove_file(&path).unwrap();
}

#[tokio::test]
async fn serve_refuses_a_broken_schema_before_binding() {
    let path = temp_schema("serve", BROKEN);
    let file = path.display().to_string();
    let out = run(&["serve", "--schema", &file, "--listen", "127.0.0.1:0"]).await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(!out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains(&format!("{file}:3:18")), "{stderr}");
    assert!(stderr.contains("nothing was served"), "{stderr}");
    for output in [&stdout, &stderr] {
        assert!(
            !output.contains("serving"),
            "it got as far as serving: {output}"
        );
        assert!(
            !output.contains("cannot listen"),
            "it tried to bind: {output}"
        );
    }
    std::fs::remove_file(&path).unwrap();
}

#[tokio::test]
async fn print_command_shows_the_client_facing_sdl() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql");
    let out = run(&["print", "--schema", file]).await;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for kept in [
        "type Query",
        "type User",
        "union SearchResult",
        "input NewOrder",
        "enum OrderStatus",
        "createOrder(input: NewOrder!): Order",
    ] {
        assert!(stdout.contains(kept), "{kept:?} missing from:\n{stdout}");
    }
    for gone in ["@rest", "@upstream", "@map", "baseUrl", "127.0.0.1"] {
        assert!(!stdout.contains(gone), "{gone:?} in:\n{stdout}");
    }
}
