//! Fuzzing the request front end: generated GraphQL documents, variables and HTTP bodies go
//! through body parsing, the query-text limits, parsing, validation, planning and execution
//! against a loopback mock, in process and over HTTP. A case fails the run if anything
//! panics, if it takes longer than [`CASE_LIMIT`], or if the server answers 5xx or drops the
//! connection. A stack overflow aborts the whole process, as it would in production: cases
//! run on tokio workers with production's 2 MiB stacks.
//!
//! Knobs (environment):
//! - `FANOUT_FUZZ_SECS`: how long to generate cases (default 10, what CI runs).
//! - `FANOUT_FUZZ_SEED`: the run's seed (default: from the clock). Every run prints it; the
//!   same seed generates the same cases in the same order.
//! - `FANOUT_FUZZ_REPLAY`: a `fuzz-failure-<seed>.txt` file; runs only the case it holds.
//!
//! While a case runs it is kept in `<target>/fuzz-failure-<seed>.txt`: a case that fails
//! is left there with the reason, and so is a case that killed the process (a stack
//! overflow cannot be caught). A run that passes removes the file.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    io::{Seek, SeekFrom, Write as _},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, Once, mpsc},
    time::{Duration, Instant, SystemTime},
};

use async_graphql::Value as ConstValue;
use axum::http::HeaderMap;
use fanout::{Gateway, Options, http::HttpOptions};
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};
use tokio::{runtime::Runtime, task::JoinHandle};

use crate::support::{self, Mock, Recorded, Reply, with_mock};

/// The longest a case may take, end to end.
const CASE_LIMIT: Duration = Duration::from_secs(5);
/// How long to fuzz without `FANOUT_FUZZ_SECS`.
const DEFAULT_SECS: f64 = 10.0;
/// Production runs requests on tokio workers with the default 2 MiB stacks.
const WORKER_STACK: usize = 2 * 1024 * 1024;
const WORKER_NAME: &str = "fanout-fuzz-worker";
/// A fresh mock, gateway and server after this many cases (the mock keeps every request).
const CASES_PER_ENV: usize = 20_000;

// ----------------------------------------------------------------------------------------
// The schema under test, and its upstream
// ----------------------------------------------------------------------------------------

const SCHEMA: &str = r#"
extend schema @upstream(name: "lib", baseUrl: "{MOCK}", timeout: "300ms", retries: 0,
                        breakerFailures: 1000000)

"Anything with an id."
interface Node { id: ID! }

enum Genre { SCIFI FANTASY HISTORY }

input Range { from: Int = 0, to: Int }

input Filter {
  genre: Genre = SCIFI
  tags: [String!] = ["new"]
  range: Range = {from: 1}
  nested: [Filter]
  title: String
}

input NewBook {
  title: String!
  authorId: ID!
  genre: Genre = FANTASY
  tags: [String!]
  filter: Filter
}

type Author implements Node {
  id: ID!
  name: String
  born: Int
  books(first: Int = 2, genre: Genre, filter: Filter): [Book]
    @rest(upstream: "lib", path: "/authors/{parent.id}/books", timeout: "200ms",
          query: [{name: "first", value: "{args.first}"}, {name: "genre", value: "{args.genre}"}])
  coauthor: Author @rest(upstream: "lib", path: "/authors/{parent.coauthorId}", timeout: "200ms")
}

type Book implements Node {
  id: ID!
  title: String
  genre: Genre
  tags: [String!]
  rating: Float
  author: Author
    @rest(upstream: "lib", path: "/authors", timeout: "200ms",
          batch: {key: "{parent.authorId}", query: "ids", match: "id"})
}

union SearchResult = Author | Book

type Query {
  author(id: ID! = "1"): Author @rest(upstream: "lib", path: "/authors/{args.id}")
  books(filter: Filter = {genre: FANTASY, range: {to: 9}}, first: Int = 2, order: [Genre!] = [SCIFI]): [Book]
    @rest(upstream: "lib", path: "/books", query: [{name: "first", value: "{args.first}"}])
  node(id: ID!): Node @rest(upstream: "lib", path: "/nodes/{args.id}")
  search(q: String = "", limit: Int = 3): [SearchResult]
    @rest(upstream: "lib", path: "/search", query: [{name: "q", value: "{args.q}"}])
  echo(text: String, n: Int, x: Float, flag: Boolean, ids: [ID!]): String
    @rest(upstream: "lib", path: "/echo", query: [{name: "text", value: "{args.text}"}])
}

type Mutation {
  addBook(input: NewBook!): Book
    @rest(upstream: "lib", method: POST, path: "/books", body: "{args.input}", timeout: "200ms")
}
"#;

fn author(id: &str) -> Json {
    let coauthor = if id == "2" { "1" } else { "2" };
    json!({"id": id, "name": "Ada", "born": 1815, "coauthorId": coauthor})
}

fn book(id: &str, author: &str) -> Json {
    json!({"id": id, "title": "Dune", "genre": "SCIFI", "tags": ["a", "b"], "rating": 4.5,
           "authorId": author})
}

/// Small canned answers, at once.
fn upstream(r: &Recorded) -> Reply {
    let segments: Vec<&str> = r.path.trim_start_matches('/').split('/').collect();
    match (r.method.as_str(), segments.as_slice()) {
        ("GET", ["authors"]) => {
            let ids: Vec<Json> = r
                .params()
                .into_iter()
                .filter(|(k, _)| k == "ids")
                .flat_map(|(_, v)| v.split(',').map(author).collect::<Vec<_>>())
                .collect();
            Reply::json(Json::Array(ids))
        }
        ("GET", ["authors", id]) => Reply::json(author(id)),
        ("GET", ["authors", id, "books"]) => Reply::json(json!([book("b1", "1"), book("b2", id)])),
        ("GET", ["books"]) => Reply::json(json!([book("b1", "1"), book("b2", "2")])),
        ("POST", ["books"]) => Reply::json(book("b9", "1")),
        ("GET", ["nodes", id]) if id.starts_with('b') => {
            let mut b = book(id, "1");
            b["__typename"] = json!("Book");
            Reply::json(b)
        }
        ("GET", ["nodes", id]) => {
            let mut a = author(id);
            a["__typename"] = json!("Author");
            Reply::json(a)
        }
        ("GET", ["search"]) => {
            let mut a = author("1");
            a["__typename"] = json!("Author");
            let mut b = book("b1", "2");
            b["__typename"] = json!("Book");
            Reply::json(json!([a, b]))
        }
        ("GET", ["echo"]) => Reply::json(json!("echo")),
        _ => Reply::status(404, "{}"),
    }
}

/// The mock, a gateway over it, and that gateway served on loopback.
struct Env {
    gw: Arc<Gateway>,
    url: String,
    http: reqwest::Client,
    _mock: Mock,
    _server: JoinHandle<()>,
}

impl Env {
    async fn start() -> Env {
        let mock = Mock::start(upstream).await;
        let options = Options {
            default_timeout: Duration::from_millis(300),
            request_timeout: Duration::from_secs(1),
            ..Options::default()
        };
        let gw = match Gateway::load(&with_mock(SCHEMA, &mock), options, &|_| None) {
            Ok((gw, _)) => gw,
            Err(diags) => panic!("the fuzz schema did not load: {diags:#?}"),
        };
        let (addr, server) =
            support::serve(fanout::http::router(gw.clone(), HttpOptions::default())).await;
        let http = reqwest::Client::builder()
            .timeout(CASE_LIMIT + Duration::from_secs(1))
            .build()
            .unwrap();
        Env {
            gw,
            url: format!("http://{addr}/graphql"),
            http,
            _mock: mock,
            _server: server,
        }
    }
}

// ----------------------------------------------------------------------------------------
// A seeded PRNG (splitmix64): a case depends only on the run's seed and its index.
// ----------------------------------------------------------------------------------------

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// 0..n (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// lo..=hi.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    fn percent(&mut self, p: usize) -> bool {
        self.below(100) < p
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    /// 1..=max, log-uniformly: mostly small, sometimes large.
    fn log_size(&mut self, max: usize) -> usize {
        let bits = (usize::BITS - max.leading_zeros()) as usize;
        let hi = (1usize << self.below(bits + 1)).min(max).max(1);
        self.range(hi.div_ceil(2), hi)
    }
}

// ----------------------------------------------------------------------------------------
// What the generator knows of the schema
// ----------------------------------------------------------------------------------------

struct F {
    name: &'static str,
    ty: &'static str,
    args: &'static [(&'static str, &'static str)],
}

const fn f(
    name: &'static str,
    ty: &'static str,
    args: &'static [(&'static str, &'static str)],
) -> F {
    F { name, ty, args }
}

const QUERY: &[F] = &[
    f("author", "Author", &[("id", "ID!")]),
    f(
        "books",
        "[Book]",
        &[
            ("filter", "Filter"),
            ("first", "Int"),
            ("order", "[Genre!]"),
        ],
    ),
    f("node", "Node", &[("id", "ID!")]),
    f(
        "search",
        "[SearchResult]",
        &[("q", "String"), ("limit", "Int")],
    ),
    f(
        "echo",
        "String",
        &[
            ("text", "String"),
            ("n", "Int"),
            ("x", "Float"),
            ("flag", "Boolean"),
            ("ids", "[ID!]"),
        ],
    ),
    f("__schema", "__Schema!", &[]),
    f("__type", "__Type", &[("name", "String!")]),
];
const MUTATION: &[F] = &[f("addBook", "Book", &[("input", "NewBook!")])];
const AUTHOR: &[F] = &[
    f("id", "ID!", &[]),
    f("name", "String", &[]),
    f("born", "Int", &[]),
    f(
        "books",
        "[Book]",
        &[("first", "Int"), ("genre", "Genre"), ("filter", "Filter")],
    ),
    f("coauthor", "Author", &[]),
];
const BOOK: &[F] = &[
    f("id", "ID!", &[]),
    f("title", "String", &[]),
    f("genre", "Genre", &[]),
    f("tags", "[String!]", &[]),
    f("rating", "Float", &[]),
    f("author", "Author", &[]),
];
const NODE: &[F] = &[f("id", "ID!", &[])];
const SCHEMA_T: &[F] = &[
    f("types", "[__Type!]!", &[]),
    f("queryType", "__Type!", &[]),
    f("mutationType", "__Type", &[]),
    f("directives", "[__Directive!]!", &[]),
    f("description", "String", &[]),
];
const TYPE_T: &[F] = &[
    f("kind", "__TypeKind!", &[]),
    f("name", "String", &[]),
    f("fields", "[__Field!]", &[("includeDeprecated", "Boolean!")]),
    f("interfaces", "[__Type!]", &[]),
    f("possibleTypes", "[__Type!]", &[]),
    f(
        "enumValues",
        "[__EnumValue!]",
        &[("includeDeprecated", "Boolean!")],
    ),
    f("inputFields", "[__InputValue!]", &[]),
    f("ofType", "__Type", &[]),
];
const FIELD_T: &[F] = &[
    f("name", "String!", &[]),
    f("args", "[__InputValue!]!", &[]),
    f("type", "__Type!", &[]),
    f("isDeprecated", "Boolean!", &[]),
];
const INPUT_VALUE_T: &[F] = &[
    f("name", "String!", &[]),
    f("type", "__Type!", &[]),
    f("defaultValue", "String", &[]),
];
const ENUM_VALUE_T: &[F] = &[
    f("name", "String!", &[]),
    f("isDeprecated", "Boolean!", &[]),
];
const DIRECTIVE_T: &[F] = &[
    f("name", "String!", &[]),
    f("locations", "[__DirectiveLocation!]!", &[]),
    f("args", "[__InputValue!]!", &[]),
];

/// The fields of a composite type; `None` for leaves and unknown names.
fn fields_of(ty: &str) -> Option<&'static [F]> {
    Some(match ty {
        "Query" => QUERY,
        "Mutation" => MUTATION,
        "Author" => AUTHOR,
        "Book" => BOOK,
        "Node" => NODE,
        "SearchResult" => &[],
        "__Schema" => SCHEMA_T,
        "__Type" => TYPE_T,
        "__Field" => FIELD_T,
        "__InputValue" => INPUT_VALUE_T,
        "__EnumValue" => ENUM_VALUE_T,
        "__Directive" => DIRECTIVE_T,
        _ => return None,
    })
}

fn possible_types(ty: &str) -> &'static [&'static str] {
    match ty {
        "Node" | "SearchResult" => &["Author", "Book"],
        "Author" => &["Author", "Node", "SearchResult"],
        "Book" => &["Book", "Node", "SearchResult"],
        "Query" => &["Query"],
        "Mutation" => &["Mutation"],
        _ => &[],
    }
}

const COMPOSITES: &[&str] = &[
    "Query",
    "Mutation",
    "Author",
    "Book",
    "Node",
    "SearchResult",
];

const INPUTS: &[(&str, &[(&str, &str)])] = &[
    (
        "Filter",
        &[
            ("genre", "Genre"),
            ("tags", "[String!]"),
            ("range", "Range"),
            ("nested", "[Filter]"),
            ("title", "String"),
        ],
    ),
    ("Range", &[("from", "Int"), ("to", "Int")]),
    (
        "NewBook",
        &[
            ("title", "String!"),
            ("authorId", "ID!"),
            ("genre", "Genre"),
            ("tags", "[String!]"),
            ("filter", "Filter"),
        ],
    ),
];

fn input_fields(ty: &str) -> Option<&'static [(&'static str, &'static str)]> {
    INPUTS.iter().find(|(n, _)| *n == ty).map(|(_, fs)| *fs)
}

/// `[Book!]!` -> `Book`.
fn base(ty: &str) -> &str {
    ty.trim_matches(|c| matches!(c, '[' | ']' | '!'))
}

/// A root field whose type is `ty`, selecting `inner`: how a fragment on `ty` is reached.
fn reach(ty: &str, inner: &str) -> String {
    match ty {
        "Query" => inner.to_owned(),
        "Author" => format!("author(id: \"1\") {{ {inner} }}"),
        "Book" => format!("books {{ {inner} }}"),
        "Node" => format!("node(id: \"b1\") {{ {inner} }}"),
        "SearchResult" => format!("search(q: \"a\") {{ {inner} }}"),
        _ => format!("__schema {{ {inner} }}"),
    }
}

// ----------------------------------------------------------------------------------------
// The document generator
// ----------------------------------------------------------------------------------------

const NAMES: &[&str] = &[
    "a", "b", "x", "id", "name", "first", "input", "v", "F", "Q", "node", "_", "A1", "__a",
];
const OP_NAMES: &[&str] = &["Q", "Op", "Dashboard", "A1", "query", "_", "M", "q2"];
const ODD_NAMES: &[&str] = &[
    "on",
    "fragment",
    "query",
    "mutation",
    "true",
    "false",
    "null",
    "__typename",
    "__schema",
    "é",
    "名前",
    "1a",
    "a-b",
    "a.b",
    "\u{0}",
    "__",
    "ON",
];
const INTS: &[&str] = &["0", "1", "-1", "2", "42", "2147483647", "-2147483648"];
const BAD_INTS: &[&str] = &[
    "2147483648",
    "9223372036854775807",
    "-9223372036854775809",
    "18446744073709551616",
    "99999999999999999999999999999999999999",
    "-0",
    "007",
    "1e3",
    "1.5",
    "0x10",
    "1_000",
];
const FLOATS: &[&str] = &[
    "0.0",
    "1.5",
    "-2.25",
    "1e10",
    "1E-10",
    "1.7976931348623157e308",
    "4.9e-324",
    "3",
    "1.5e+3",
];
const BAD_FLOATS: &[&str] = &["1e309", "-1e309", "1e-400", "1.", ".5", "1e", "-", "1.5.5"];
const STRING_PIECES: &[&str] = &[
    "a",
    "Ada Lovelace",
    " ",
    "\\n",
    "\\t",
    "\\\"",
    "\\\\",
    "\\/",
    "\\b",
    "\\f",
    "\\r",
    "\\u0041",
    "\\u00e9",
    "\\u0000",
    "\\uFFFF",
    "é",
    "😀",
    "名前",
    "\u{7f}",
    "\u{2028}",
    "\u{feff}",
    "{",
    "}",
    "#",
    "$x",
    "'",
    "{args.id}",
    "%2F..%2F",
];
const BAD_STRING_PIECES: &[&str] = &[
    "\\uD83D\\uDE00",
    "\\uD800",
    "\\uDFFF",
    "\\u{1F600}",
    "\\u{110000}",
    "\\u{}",
    "\\x41",
    "\\u12",
    "\\",
    "\n",
    "\r",
];
const BLOCK_PIECES: &[&str] = &[
    "line",
    "\n",
    "\r\n",
    "\r",
    "    indented",
    "\t",
    "\\\"\"\"",
    "\" ",
    "\"\" ",
    "\\n",
    "😀",
    "\\ ",
    " ",
    "\u{0}",
];
const COMMENTS: &[&str] = &[
    "",
    " a comment",
    "{ not } (code)",
    " ünïcödé 😀",
    "#",
    "\"",
    "\u{feff}",
];
const PUNCT: &[char] = &[
    '{', '}', '(', ')', '[', ']', ':', '$', '@', '!', '=', '|', '&', '.', '"', '#', ',', '\n',
    '\r', '\\', '\u{feff}', '…', '\0', ' ', '-', 'é',
];

/// A very deep structure somewhere in the document: the gateway must refuse it, not crash.
#[derive(Clone, Copy)]
enum Deep {
    /// Nested lists and objects in an argument, directive argument or default.
    Value(usize),
    /// Nested selection sets.
    Selection(usize),
    /// A variable's type: `[[[Int]]]`.
    ListType(usize),
}

/// How deep a deep structure is: from about the parser's limit (32) to thousands.
fn deep_depth(r: &mut Rng) -> usize {
    match r.below(10) {
        0..=2 => r.range(30, 200),
        3..=5 => r.range(200, 2000),
        6..=8 => r.range(2000, 6000),
        _ => r.range(6000, 30000),
    }
}

/// Lists and objects nested `depth` deep around a leaf, built without recursion. One style
/// is a valid `Filter` (`{nested: [{nested: [...]}]}`), which passes validation when not
/// too deep for it.
fn deep_value(r: &mut Rng, depth: usize, out: &mut String) {
    let style = r.below(5);
    let sibling = r.one_in(3);
    let mut closers = Vec::with_capacity(depth);
    for i in 0..depth {
        if style == 4 {
            out.push_str(if sibling {
                "{title: \"t\", nested: ["
            } else {
                "{nested: ["
            });
            closers.extend(['}', ']']);
            continue;
        }
        let list = match style {
            0 => true,
            1 => false,
            2 => i % 2 == 0,
            _ => r.one_in(2),
        };
        if list {
            out.push_str(if sibling { "[0, " } else { "[" });
            closers.push(']');
        } else {
            out.push_str(if sibling { "{b: 0, a: " } else { "{a: " });
            closers.push('}');
        }
    }
    let leaf = if style == 4 {
        "{title: \"x\"}"
    } else {
        r.pick(&["1", "true", "\"s\"", "null", "SCIFI", "[]", "{}", "$v"])
    };
    out.push_str(leaf);
    let close = if r.one_in(8) {
        r.below(closers.len() + 1)
    } else {
        closers.len()
    };
    for c in closers.iter().rev().take(close) {
        out.push(*c);
    }
}

/// Selection sets nested `depth` deep, built without recursion.
fn deep_selection(r: &mut Rng, depth: usize, out: &mut String) {
    const LEVELS: &[&str] = &[
        "coauthor { ",
        "... on Author { ",
        "... { ",
        "x: coauthor { ",
        "books { author { ",
        "a { ",
    ];
    let style = r.below(LEVELS.len() + 1);
    let mut closers = 0;
    for _ in 0..depth {
        let level = if style < LEVELS.len() {
            LEVELS[style]
        } else {
            r.pick(LEVELS)
        };
        out.push_str(level);
        closers += level.matches('{').count();
    }
    out.push_str("__typename");
    let close = if r.one_in(8) {
        r.below(closers + 1)
    } else {
        closers
    };
    for _ in 0..close {
        out.push_str(" }");
    }
}

fn deep_list_type(r: &mut Rng, depth: usize) -> String {
    let mut t = "[".repeat(depth);
    t.push_str(r.pick(&["Int", "Filter", "Genre", "String!"]));
    for _ in 0..depth {
        t.push(']');
        if r.one_in(3) {
            t.push('!');
        }
    }
    t
}

/// A generated document and what a request for it may refer to.
struct Document {
    text: String,
    /// Whether the generator meant it to be valid (it may still not be).
    clean: bool,
    operation_names: Vec<String>,
    /// Declared variables and their types, for generating the request's variables.
    variables: Vec<(String, String)>,
}

/// Generates one document. A clean document is meant to pass validation (and so to run):
/// only its deep structure, if it has one, is wrong. Otherwise mistakes of every kind are
/// made now and then.
struct Gen<'a> {
    r: &'a mut Rng,
    clean: bool,
    /// Variables the current operation uses, with the type where they are used.
    used: Vec<(String, String)>,
    /// Whether a value may be a variable here (not in defaults; in clean fragments, not).
    vars_ok: bool,
    /// Fragments of the document: name and type condition.
    frags: Vec<(String, String)>,
    /// The fragment being generated: a clean one spreads only later ones (no cycles).
    current_frag: Option<usize>,
    deep: Option<Deep>,
    /// Aliases and variables made so far: a clean document's are all different.
    aliases: usize,
    /// Selections still allowed; keeps documents small.
    budget: usize,
    max_depth: usize,
}

impl Gen<'_> {
    /// A mistake, one time in `n`, in a document that is allowed mistakes.
    fn bad(&mut self, n: usize) -> bool {
        !self.clean && self.r.one_in(n)
    }

    /// White space between tokens; now and then commas, a BOM, a comment ending in `\n`,
    /// `\r` or `\r\n`.
    fn sep(&mut self, out: &mut String) {
        match self.r.below(40) {
            0 => out.push('\n'),
            1 => out.push_str("\r\n"),
            2 => out.push('\t'),
            3 => out.push_str(", "),
            4 => out.push_str(",,"),
            5 => out.push('\u{feff}'),
            6 | 7 => {
                out.push_str(" #");
                out.push_str(self.r.pick(COMMENTS));
                out.push_str(self.r.pick(&["\n", "\r", "\r\n"]));
            }
            8 => out.push('\r'),
            _ => out.push(' '),
        }
    }

    fn name(&mut self) -> String {
        if self.bad(20) {
            return self.r.pick(ODD_NAMES).to_owned();
        }
        if self.r.one_in(20) {
            let len = self.r.log_size(40);
            return (0..len)
                .map(|i| {
                    let set: &[u8] = if i == 0 {
                        b"_abcxyzABCXYZ"
                    } else {
                        b"_abcxyzABCXYZ0189"
                    };
                    set[self.r.below(set.len())] as char
                })
                .collect();
        }
        self.r.pick(NAMES).to_owned()
    }

    fn alias(&mut self, stem: &str, out: &mut String) {
        if self.clean {
            write!(out, "{stem}{}:", self.aliases).unwrap();
            self.aliases += 1;
        } else {
            out.push_str(&self.name());
            out.push(':');
        }
        self.sep(out);
    }

    fn selection_set(&mut self, ty: &str, depth: usize, extra: Option<&str>, out: &mut String) {
        out.push('{');
        self.sep(out);
        let n = if self.bad(25) {
            0
        } else if self.budget == 0 {
            1
        } else if self.r.one_in(12) {
            self.r.range(4, 10)
        } else {
            self.r.range(1, 3)
        };
        let extra_at = self.r.below(n + 1);
        for i in 0..=n {
            if i == extra_at
                && let Some(extra) = extra
            {
                out.push_str(extra);
                self.sep(out);
            }
            if i < n {
                self.selection(ty, depth, out);
                self.sep(out);
            }
        }
        out.push('}');
    }

    fn selection(&mut self, ty: &str, depth: usize, out: &mut String) {
        self.budget = self.budget.saturating_sub(1);
        if let Some(Deep::Selection(d)) = self.deep
            && self.r.one_in(3)
        {
            self.deep = None;
            deep_selection(self.r, d, out);
            return;
        }
        match self.r.below(100) {
            65..=74 => {
                if self.r.one_in(4) {
                    self.alias("t", out);
                }
                out.push_str("__typename");
                if self.r.one_in(6) {
                    self.directives(out);
                }
            }
            75..=84 => self.inline_fragment(ty, depth, out),
            85..=94 => self.spread(ty, depth, out),
            95.. if !self.clean => {
                out.push_str(&self.name());
                if self.r.one_in(3) {
                    self.arguments(&[("a", "?"), ("id", "ID")], out);
                }
                if self.r.one_in(3) && depth < self.max_depth {
                    self.sep(out);
                    self.selection_set("Author", depth + 1, None, out);
                }
            }
            _ => self.field(ty, depth, out),
        }
    }

    fn field(&mut self, ty: &str, depth: usize, out: &mut String) {
        let fields = fields_of(ty).unwrap_or(&[]);
        if fields.is_empty() {
            out.push_str("__typename");
            return;
        }
        let def = &fields[self.r.below(fields.len())];
        // Two fields of one response key must have the same arguments: in a clean document,
        // every field that takes arguments has an alias of its own.
        if (self.clean && !def.args.is_empty()) || self.r.one_in(5) {
            self.alias(def.name, out);
        }
        out.push_str(def.name);
        self.arguments(def.args, out);
        if self.r.one_in(8) {
            self.directives(out);
        }
        let inner = base(def.ty);
        if fields_of(inner).is_some() {
            if self.bad(40) {
                return; // a composite field without a selection set
            }
            self.sep(out);
            if depth >= self.max_depth || self.budget == 0 {
                let leaf = if self.bad(4) {
                    self.r.pick(&["{ id }", "{}", "{ name }"])
                } else {
                    "{ __typename }"
                };
                out.push_str(leaf);
            } else {
                self.selection_set(inner, depth + 1, None, out);
            }
        } else if self.bad(40) {
            self.sep(out);
            out.push_str("{ id }"); // a selection set on a leaf
        }
    }

    fn arguments(&mut self, args: &[(&str, &str)], out: &mut String) {
        let mut list: Vec<(String, String)> = Vec::new();
        for (name, ty) in args {
            let required = ty.ends_with('!');
            if (required && !self.bad(10)) || self.r.percent(40) {
                list.push(((*name).to_owned(), (*ty).to_owned()));
            }
        }
        if self.bad(20) {
            list.push((self.name(), "?".to_owned()));
        }
        if !list.is_empty() && self.bad(30) {
            list.push(list[0].clone());
        }
        if list.is_empty() {
            if self.bad(40) {
                out.push_str("()");
            }
            return;
        }
        out.push('(');
        for (i, (name, ty)) in list.iter().enumerate() {
            if i > 0 {
                self.sep(out);
            }
            out.push_str(name);
            out.push(':');
            self.sep(out);
            self.value(ty, 0, out);
        }
        out.push(')');
    }

    /// `@include` and `@skip`; in an unclean document also missing or unknown arguments,
    /// unknown directives, and too many.
    fn directives(&mut self, out: &mut String) {
        let n = if self.bad(20) {
            self.r.range(5, 15)
        } else {
            self.r.range(1, 2)
        };
        let clean_first = self.r.below(2);
        for i in 0..n {
            self.sep(out);
            let roll = if self.clean {
                // One of each at most.
                [0, 4][(clean_first + i) % 2]
            } else {
                self.r.below(10)
            };
            match roll {
                0..=3 => {
                    out.push_str("@include(if: ");
                    self.value("Boolean!", 0, out);
                    out.push(')');
                }
                4..=6 => {
                    out.push_str("@skip(if:");
                    self.sep(out);
                    self.value("Boolean!", 0, out);
                    out.push(')');
                }
                7 => out.push_str(self.r.pick(&[
                    "@include",
                    "@skip()",
                    "@skip(if: true, if: false)",
                ])),
                8 => out.push_str(self.r.pick(&[
                    "@deprecated",
                    "@specifiedBy(url: \"x\")",
                    "@oneOf",
                ])),
                _ => {
                    out.push('@');
                    out.push_str(&self.name());
                    if self.r.one_in(2) {
                        self.arguments(&[("a", "?"), ("if", "Boolean")], out);
                    }
                }
            }
        }
    }

    fn inline_fragment(&mut self, ty: &str, depth: usize, out: &mut String) {
        out.push_str("...");
        let fitting = possible_types(ty);
        let cond = match self.r.below(10) {
            0..=4 if !fitting.is_empty() => self.r.pick(fitting),
            5 if !self.clean => self.r.pick(COMPOSITES),
            6 if !self.clean => self.r.pick(&["String", "Genre", "Nope", "Filter"]),
            _ => ty,
        };
        if cond != ty || self.r.one_in(3) {
            out.push_str(" on ");
            out.push_str(cond);
        }
        if self.r.one_in(6) {
            self.directives(out);
        }
        self.sep(out);
        let cond = cond.to_owned();
        self.selection_set(&cond, depth + 1, None, out);
    }

    fn spread(&mut self, ty: &str, depth: usize, out: &mut String) {
        if self.bad(10) {
            out.push_str("...");
            out.push_str(&self.name()); // most likely undefined
            return;
        }
        let after = self.current_frag.map_or(0, |k| k + 1);
        let fitting: Vec<usize> = (0..self.frags.len())
            .filter(|&i| {
                let cond = self.frags[i].1.as_str();
                (cond == ty || possible_types(ty).contains(&cond)) && (!self.clean || i >= after)
            })
            .collect();
        let i = if !fitting.is_empty() && !self.bad(5) {
            self.r.pick(&fitting)
        } else if !self.clean && !self.frags.is_empty() {
            self.r.below(self.frags.len())
        } else {
            return self.field(ty, depth, out);
        };
        out.push_str("...");
        out.push_str(&self.frags[i].0.clone());
        if self.r.one_in(8) {
            self.directives(out);
        }
    }

    /// A variable for a value of type `ty`: in a clean document, declared with that type.
    fn variable(&mut self, ty: &str, out: &mut String) {
        let name = if self.clean {
            match self.used.iter().find(|(_, t)| t == ty) {
                Some((n, _)) if self.r.one_in(2) => n.clone(),
                _ => {
                    // Unique in the document: operations do not share variable names.
                    self.aliases += 1;
                    format!("v{}", self.aliases)
                }
            }
        } else {
            self.r
                .pick(&["v", "x", "id", "input", "flag", "f", "deep"])
                .to_owned()
        };
        out.push('$');
        out.push_str(&name);
        self.used.push((name, ty.to_owned()));
    }

    /// A value for an input of type `ty` (`?`: any type); in a clean document, of that type.
    fn value(&mut self, ty: &str, depth: usize, out: &mut String) {
        if let Some(Deep::Value(d)) = self.deep
            && self.r.one_in(2)
        {
            self.deep = None;
            deep_value(self.r, d, out);
            return;
        }
        if depth > 8 {
            out.push_str("null"); // a deep list type (`[[[[Int]]]]`) takes deep values
            return;
        }
        if self.vars_ok && ty != "?" && self.r.one_in(12) {
            return self.variable(ty, out);
        }
        if ty == "?" || self.bad(15) {
            return self.any_value(depth, out);
        }
        let ty = match ty.strip_suffix('!') {
            Some(_) if self.bad(15) => {
                out.push_str("null"); // null for a non-null type
                return;
            }
            Some(t) => t,
            None if self.r.one_in(15) => {
                out.push_str("null");
                return;
            }
            None => ty,
        };
        if let Some(inner) = ty.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            if self.r.one_in(4) {
                return self.value(inner, depth + 1, out); // one item is coerced to a list
            }
            out.push('[');
            for i in 0..self.r.below(4) {
                if i > 0 {
                    self.sep(out);
                }
                self.value(inner, depth + 1, out);
            }
            out.push(']');
            return;
        }
        match ty {
            "Int" if self.bad(5) => out.push_str(self.r.pick(BAD_INTS)),
            "Int" => out.push_str(self.r.pick(INTS)),
            "Float" if self.bad(5) => out.push_str(self.r.pick(BAD_FLOATS)),
            "Float" => out.push_str(self.r.pick(FLOATS)),
            "ID" if self.r.one_in(3) => out.push_str(self.r.pick(INTS)),
            "String" | "ID" => self.string(out),
            "Boolean" if self.bad(5) => out.push_str(self.r.pick(&["TRUE", "1", "\"true\""])),
            "Boolean" => out.push_str(self.r.pick(&["true", "false"])),
            "Genre" if self.bad(5) => out.push_str(self.r.pick(&["NOPE", "\"SCIFI\"", "scifi"])),
            "Genre" => out.push_str(self.r.pick(&["SCIFI", "FANTASY", "HISTORY"])),
            _ => match input_fields(ty) {
                Some(fields) => self.object(fields, depth, out),
                None => self.any_value(depth, out),
            },
        }
    }

    fn object(&mut self, fields: &[(&str, &str)], depth: usize, out: &mut String) {
        out.push('{');
        let mut first = true;
        for (name, ty) in fields {
            let required = ty.ends_with('!');
            if (required && !self.bad(10)) || (depth < 4 && self.r.percent(40)) {
                if !first {
                    self.sep(out);
                }
                first = false;
                out.push_str(name);
                out.push(':');
                self.sep(out);
                self.value(ty, depth + 1, out);
            }
        }
        if self.bad(20) {
            out.push_str(if first { "" } else { ", " });
            out.push_str(&self.name());
            out.push_str(": 1");
        }
        out.push('}');
    }

    fn any_value(&mut self, depth: usize, out: &mut String) {
        match self.r.below(12) {
            0 => out.push_str("null"),
            1 => out.push_str(self.r.pick(BAD_INTS)),
            2 => out.push_str(self.r.pick(BAD_FLOATS)),
            3 => self.string(out),
            4 => out.push_str(self.r.pick(&["true", "false"])),
            5 => out.push_str(&self.name()),
            6 if depth < 3 => {
                out.push('[');
                for _ in 0..self.r.below(4) {
                    self.any_value(depth + 1, out);
                    self.sep(out);
                }
                out.push(']');
            }
            7 if depth < 3 => {
                out.push('{');
                for _ in 0..self.r.below(3) {
                    out.push_str(&self.name());
                    out.push(':');
                    self.any_value(depth + 1, out);
                    self.sep(out);
                }
                out.push('}');
            }
            8 if self.vars_ok => self.variable("?", out),
            _ => out.push_str(self.r.pick(INTS)),
        }
    }

    /// A string or block string with escapes and unicode; unclean ones may be broken.
    fn string(&mut self, out: &mut String) {
        if self.r.one_in(6) {
            out.push_str("\"\"\"");
            for _ in 0..self.r.below(6) {
                out.push_str(self.r.pick(BLOCK_PIECES));
            }
            if !self.bad(30) {
                out.push_str("\"\"\"");
            }
            return;
        }
        out.push('"');
        for _ in 0..self.r.below(6) {
            out.push_str(self.r.pick(STRING_PIECES));
        }
        if self.bad(6) {
            out.push_str(self.r.pick(BAD_STRING_PIECES));
        }
        if !self.bad(40) {
            out.push('"');
        }
    }

    fn var_type(&mut self) -> String {
        let mut t = self
            .r
            .pick(&[
                "Int", "Float", "String", "Boolean", "ID", "Genre", "Filter", "Range", "NewBook",
                "Author", "Node", "Nope", "__Type",
            ])
            .to_owned();
        for _ in 0..self.r.below(4) {
            t = match self.r.below(3) {
                0 => format!("[{t}]"),
                1 if !t.ends_with('!') => format!("{t}!"),
                _ => t,
            };
        }
        t
    }

    /// One operation; `extra` goes into its root selection set. `name` is required when
    /// the clean document has several operations.
    fn operation(
        &mut self,
        name: Option<String>,
        extra: Option<&str>,
        doc: &mut Document,
    ) -> String {
        self.used.clear();
        let kind = if name.is_none() && self.r.percent(40) {
            None
        } else if self.clean && extra.is_some() {
            Some("query") // the fragments' entry is a query's selection
        } else if self.clean {
            Some(self.r.pick(&["query", "query", "query", "mutation"]))
        } else {
            Some(self.r.pick(&[
                "query",
                "query",
                "query",
                "mutation",
                "mutation",
                "subscription",
            ]))
        };
        let root = if kind == Some("mutation") {
            "Mutation"
        } else {
            "Query"
        };
        // A shorthand query declares no variables.
        self.vars_ok = kind.is_some() || !self.clean;
        let mut body = String::new();
        self.selection_set(root, 0, extra, &mut body);
        self.vars_ok = false;
        let Some(kind) = kind else {
            return body;
        };
        let mut out = kind.to_owned();
        let name = match name {
            Some(n) => Some(n),
            None if self.r.percent(75) => Some(if self.r.one_in(10) {
                self.name()
            } else {
                self.r.pick(OP_NAMES).to_owned()
            }),
            None => None,
        };
        if let Some(name) = name {
            out.push(' ');
            out.push_str(&name);
            doc.operation_names.push(name);
        }
        let mut defs: Vec<(String, String)> = Vec::new();
        for (name, ty) in std::mem::take(&mut self.used) {
            if !defs.iter().any(|(n, _)| *n == name) && !self.bad(10) {
                let ty = if ty == "?" || self.bad(10) {
                    self.var_type()
                } else {
                    ty
                };
                defs.push((name, ty));
            }
        }
        if self.bad(5) {
            let ty = self.var_type();
            defs.push((self.r.pick(&["v", "extra", "x"]).to_owned(), ty));
        }
        if let Some(Deep::ListType(d)) = self.deep {
            self.deep = None;
            defs.push(("deep".to_owned(), deep_list_type(self.r, d)));
        }
        if !defs.is_empty() || self.bad(30) {
            out.push('(');
            for (name, ty) in &defs {
                out.push('$');
                out.push_str(name);
                out.push(':');
                self.sep(&mut out);
                out.push_str(ty);
                if self.r.one_in(4) {
                    out.push_str(" = ");
                    self.vars_ok = self.bad(10);
                    self.value(ty, 0, &mut out);
                    self.vars_ok = false;
                }
                if self.bad(20) {
                    self.directives(&mut out);
                }
                self.sep(&mut out);
            }
            out.push(')');
        }
        doc.variables.extend(defs);
        if self.bad(10) {
            self.directives(&mut out);
        }
        self.sep(&mut out);
        out.push_str(&body);
        out
    }

    /// Fragment definitions, and the selection that enters them from the first operation.
    fn fragments(&mut self) -> (Vec<String>, String) {
        let prefix = self.r.pick(&["F", "Frag", "f_", "A"]);
        self.vars_ok = !self.clean;
        let made = if self.r.one_in(2) {
            self.fragment_chain(prefix)
        } else {
            self.random_fragments(prefix)
        };
        self.vars_ok = false;
        self.current_frag = None;
        made
    }

    /// `F0` spreads `F1` (`fanout` times), which spreads `F2`, ...; in an unclean document
    /// the last one sometimes spreads an earlier one (a cycle).
    fn fragment_chain(&mut self, prefix: &str) -> (Vec<String>, String) {
        let n = self.r.range(2, 40);
        let fanout = self.r.pick(&[1, 2, 2, 3]);
        let cycle = self.bad(3);
        let cond = self.r.pick(&[
            "Query", "Query", "Query", "Query", "Author", "Author", "Book",
        ]);
        self.frags = (0..n)
            .map(|i| (format!("{prefix}{i}"), cond.to_owned()))
            .collect();
        let mut defs = Vec::new();
        for i in 0..n {
            self.current_frag = Some(i);
            let mut body = String::from("{");
            if i + 1 < n || cycle {
                let target = if i + 1 < n { i + 1 } else { self.r.below(n) };
                let spread = format!("...{prefix}{target}");
                for _ in 0..fanout {
                    self.sep(&mut body);
                    match self.r.below(12) {
                        0 => write!(body, "... {{ {spread} }}").unwrap(),
                        1 => write!(body, "... on {cond} {{ {spread} }}").unwrap(),
                        2 => write!(body, "{spread} @include(if: true)").unwrap(),
                        3 => write!(body, "... @skip(if: false) {{ {spread} }}").unwrap(),
                        4 if cond == "Author" => write!(body, "coauthor {{ {spread} }}").unwrap(),
                        _ => body.push_str(&spread),
                    }
                }
            }
            if i + 1 == n || self.r.one_in(3) {
                self.sep(&mut body);
                self.selection(cond, 2, &mut body);
            }
            self.sep(&mut body);
            body.push('}');
            defs.push(format!("fragment {prefix}{i} on {cond} {body}"));
        }
        (defs, reach(cond, &format!("...{prefix}0")))
    }

    /// A few fragments on random types whose selections spread other fragments.
    fn random_fragments(&mut self, prefix: &str) -> (Vec<String>, String) {
        let m = self.r.range(1, 6);
        let conds: &[&str] = if self.clean {
            &["Query", "Author", "Book", "Node", "SearchResult"]
        } else {
            COMPOSITES
        };
        self.frags = (0..m)
            .map(|i| {
                let cond = if self.bad(20) {
                    self.r.pick(&["String", "Nope", "Filter"])
                } else {
                    self.r.pick(conds)
                };
                (format!("{prefix}{i}"), cond.to_owned())
            })
            .collect();
        let mut defs = Vec::new();
        for (i, (name, cond)) in self.frags.clone().into_iter().enumerate() {
            self.current_frag = Some(i);
            let mut def = format!("fragment {name} on {cond}");
            if self.bad(10) {
                self.directives(&mut def);
            }
            self.sep(&mut def);
            self.selection_set(&cond, 1, None, &mut def);
            if self.bad(15) {
                defs.push(def.clone()); // defined twice
            }
            defs.push(def);
        }
        // Every fragment is used (an unused one is an error).
        let entry = self
            .frags
            .iter()
            .map(|(name, cond)| reach(cond, &format!("...{name}")))
            .collect::<Vec<_>>()
            .join(" ");
        (defs, entry)
    }
}

/// A run of one piece, long enough to reach (or pass) the token, alias, root-field and
/// directive limits, or just long.
fn long_document(r: &mut Rng) -> String {
    let n = r.pick(&[10, 100, 1000, 5000, 15_001, 30_000]);
    let chars = r.pick(&[1000, 100_000, 500_000]);
    let mut s = String::new();
    let written = match r.below(16) {
        0 => write!(s, "{{ {} }}", "__typename ".repeat(n)),
        1 => write!(
            s,
            "{{ {} }}",
            (0..n)
                .map(|i| format!("a{i}: __typename "))
                .collect::<String>()
        ),
        2 => write!(s, "{{ __typename {} }}", "@skip(if: false) ".repeat(n)),
        3 => write!(s, "{{ echo({}) }}", "text: \"x\", ".repeat(n)),
        4 => write!(s, "{{ echo(ids: [{}]) }}", "\"1\", ".repeat(n)),
        5 => write!(
            s,
            "query({}) {{ __typename }}",
            (0..n).map(|i| format!("$v{i}: Int, ")).collect::<String>()
        ),
        6 => write!(
            s,
            "{}",
            (0..n)
                .map(|i| format!("query Q{i} {{ __typename }} "))
                .collect::<String>()
        ),
        7 => write!(
            s,
            "{{ ...F0 }} {}",
            (0..n)
                .map(|i| format!("fragment F{i} on Query {{ __typename }} "))
                .collect::<String>()
        ),
        8 => write!(s, "{{ {} }}", "a".repeat(chars)),
        9 => write!(s, "{{ echo(text: \"{}\") }}", "x".repeat(chars)),
        10 => write!(
            s,
            "{{ echo(text: \"\"\"{}\"\"\") }}",
            "\\\"\"\" ".repeat(chars / 5)
        ),
        11 => write!(s, "{{ __typename {}}}", "# c\r\n".repeat(n)),
        12 => write!(s, "{{ __typename {}}}", ", \t\u{feff}".repeat(n)),
        13 => write!(s, "{{ __typename }}{}", "}".repeat(n)),
        14 => write!(s, "{}", "{".repeat(n)),
        _ => write!(s, "{{ echo(text: \"{}\") }}", "\\u00e9".repeat(chars / 6)),
    };
    written.unwrap();
    s
}

/// Char-level damage: delete, duplicate, insert or replace punctuation, truncate.
fn mutate_chars(r: &mut Rng, s: &str) -> String {
    let mut c: Vec<char> = s.chars().collect();
    for _ in 0..r.range(1, 4) {
        if c.is_empty() {
            break;
        }
        let i = r.below(c.len());
        let len = r.range(1, 8).min(c.len() - i);
        match r.below(6) {
            0 => {
                c.drain(i..i + len);
            }
            1 => {
                let dup: Vec<char> = c[i..i + len].to_vec();
                c.splice(i..i, dup);
            }
            2 => c.insert(i, r.pick(PUNCT)),
            3 => c[i] = r.pick(PUNCT),
            4 => c.truncate(i),
            _ => {
                let piece: Vec<char> = c[i..i + len].to_vec();
                for _ in 0..r.log_size(64) {
                    c.extend_from_slice(&piece);
                }
            }
        }
    }
    c.into_iter().collect()
}

fn document(r: &mut Rng) -> Document {
    let clean = r.percent(50);
    let mut doc = Document {
        text: String::new(),
        clean,
        operation_names: Vec::new(),
        variables: Vec::new(),
    };
    if r.one_in(30) {
        doc.text = long_document(r);
        doc.clean = false;
        return doc;
    }
    let deep = if r.one_in(7) {
        let d = deep_depth(r);
        Some(match r.below(20) {
            0..=11 => Deep::Value(d),
            12..=16 => Deep::Selection(d),
            _ => Deep::ListType(d),
        })
    } else {
        None
    };
    let max_depth = if r.one_in(15) {
        r.range(7, 17)
    } else {
        r.range(1, 5)
    };
    let budget = r.log_size(80);
    let mut g = Gen {
        r,
        clean,
        used: Vec::new(),
        vars_ok: false,
        frags: Vec::new(),
        current_frag: None,
        deep,
        aliases: 0,
        budget,
        max_depth,
    };
    let (mut parts, entry) = if g.r.one_in(3) {
        let (defs, entry) = g.fragments();
        (defs, Some(entry))
    } else {
        (Vec::new(), None)
    };
    let ops = match g.r.below(20) {
        0 if !clean => 0,
        1..=3 => g.r.range(2, 3),
        _ => 1,
    };
    let mut operations = Vec::new();
    for i in 0..ops {
        let extra = if i == 0 { entry.as_deref() } else { None };
        // Several operations in a clean document each need a name of their own.
        let name = (clean && ops > 1).then(|| format!("{}{i}", g.r.pick(OP_NAMES)));
        let name =
            name.or_else(|| (ops > 1 && !g.r.one_in(5)).then(|| g.r.pick(OP_NAMES).to_owned()));
        operations.push(g.operation(name, extra, &mut doc));
    }
    // A deep structure no generated site took goes into a fragment of its own.
    match g.deep.take() {
        Some(Deep::Value(d)) => {
            let mut s = String::from("fragment Deep on Query { ");
            if g.r.one_in(2) {
                s.push_str("__typename @include(if: ");
                deep_value(g.r, d, &mut s);
                s.push_str(") }");
            } else {
                s.push_str("echo(text: ");
                deep_value(g.r, d, &mut s);
                s.push_str(") }");
            }
            parts.push(s);
        }
        Some(Deep::Selection(d)) => {
            let mut s = String::from("fragment Deep on Author { ");
            deep_selection(g.r, d, &mut s);
            s.push_str(" }");
            parts.push(s);
        }
        Some(Deep::ListType(d)) => {
            let ty = deep_list_type(g.r, d);
            parts.push(format!("query Deep($v: {ty}) {{ __typename }}"));
        }
        None => {}
    }
    // Fragments mostly after the operations, sometimes before or in between.
    match g.r.below(10) {
        0 | 1 => parts.append(&mut operations),
        2 => {
            for op in operations {
                let at = g.r.below(parts.len() + 1);
                parts.insert(at, op);
            }
        }
        _ => {
            operations.append(&mut parts);
            parts = operations;
        }
    }
    let mut text = String::new();
    for part in &parts {
        text.push_str(part);
        g.sep(&mut text);
    }
    if g.bad(3) {
        text = mutate_chars(g.r, &text);
    }
    doc.text = text;
    doc
}

// ----------------------------------------------------------------------------------------
// Variables and bodies
// ----------------------------------------------------------------------------------------

const JSON_STRINGS: &[&str] = &[
    "",
    "1",
    "b1",
    "Ada",
    "é",
    "😀",
    "\u{0}",
    "\"",
    "\\",
    "{__typename}",
    "\n",
    "SCIFI",
    "NOPE",
    "../..",
    "%00",
    "a,b",
];

fn json_number(r: &mut Rng) -> Json {
    match r.below(8) {
        0 => json!(0),
        1 => json!(-1),
        2 => json!(2_147_483_648_i64),
        3 => json!(1.5),
        4 => json!(1e300),
        5 => json!(u64::MAX),
        6 => json!(i64::MIN),
        _ => json!(r.below(100)),
    }
}

fn json_string(r: &mut Rng) -> Json {
    if r.one_in(50) {
        return json!("é".repeat(r.log_size(20_000)));
    }
    json!(r.pick(JSON_STRINGS))
}

fn any_json(r: &mut Rng, depth: usize) -> Json {
    match r.below(8) {
        0 => Json::Null,
        1 => json!(r.one_in(2)),
        2 => json_number(r),
        3 | 4 => json_string(r),
        5 if depth < 4 => Json::Array((0..r.below(4)).map(|_| any_json(r, depth + 1)).collect()),
        6 if depth < 4 => {
            let mut m = serde_json::Map::new();
            for _ in 0..r.below(4) {
                m.insert(r.pick(NAMES).to_owned(), any_json(r, depth + 1));
            }
            Json::Object(m)
        }
        _ => json_string(r),
    }
}

/// Arrays and objects `depth` deep, built without recursion.
fn deep_json(r: &mut Rng, depth: usize) -> Json {
    let mut v = json!(1);
    for _ in 0..depth {
        v = if r.one_in(2) {
            json!([v])
        } else {
            json!({ "a": v })
        };
    }
    v
}

/// A valid `Filter` nested `depth` deep (`{"nested": [{"nested": [...]}]}`), or a
/// `NewBook` holding one, built without recursion.
fn deep_filter_json(r: &mut Rng, ty: &str, depth: usize) -> Json {
    let mut v = json!({ "title": "x" });
    for _ in 0..depth {
        v = json!({ "nested": [v] });
    }
    if base(ty) == "NewBook" {
        v = json!({ "title": "t", "authorId": r.pick(&["1", "2"]), "filter": v });
    }
    v
}

/// A JSON value for a variable of type `ty`; when not `clean`, now and then of another.
fn json_for(r: &mut Rng, ty: &str, depth: usize, clean: bool) -> Json {
    if (!clean && r.one_in(12)) || depth > 5 {
        return any_json(r, 3);
    }
    let ty = match ty.strip_suffix('!') {
        Some(t) => t,
        None if r.one_in(10) => return Json::Null,
        None => ty,
    };
    if let Some(inner) = ty.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        if r.one_in(4) {
            return json_for(r, inner, depth + 1, clean);
        }
        return Json::Array(
            (0..r.below(4))
                .map(|_| json_for(r, inner, depth + 1, clean))
                .collect(),
        );
    }
    match ty {
        "Int" if clean => json!(r.pick(&[0, 1, -1, 42, i32::MAX, i32::MIN])),
        "Float" if clean => json!(r.pick(&[0.0, 1.5, -2.25, 1e300])),
        "Int" | "Float" => json_number(r),
        "ID" if r.one_in(3) => json!(r.below(10)),
        "String" | "ID" => json_string(r),
        "Boolean" => json!(r.one_in(2)),
        "Genre" if clean => json!(r.pick(&["SCIFI", "FANTASY", "HISTORY"])),
        "Genre" => json!(r.pick(&["SCIFI", "FANTASY", "NOPE", "scifi"])),
        _ => match input_fields(ty) {
            Some(fields) => {
                let mut m = serde_json::Map::new();
                for (name, fty) in fields {
                    if fty.ends_with('!') || r.percent(40) {
                        m.insert((*name).to_owned(), json_for(r, fty, depth + 1, clean));
                    }
                }
                Json::Object(m)
            }
            None => any_json(r, 3),
        },
    }
}

/// The request's variables. For a clean document, one of each declared type; otherwise
/// mostly so, with missing, mistyped and extra ones, a deeply nested value (that serde
/// still parses), or no object at all.
fn variables(r: &mut Rng, doc: &Document) -> Option<Json> {
    let defs = &doc.variables;
    if doc.clean {
        if defs.is_empty() && r.one_in(2) {
            return None;
        }
        let vars = defs
            .iter()
            .map(|(name, ty)| {
                let v = if matches!(base(ty), "Filter" | "NewBook") && r.one_in(5) {
                    let d = r.range(5, 58);
                    deep_filter_json(r, ty, d)
                } else {
                    json_for(r, ty, 0, true)
                };
                (name.clone(), v)
            })
            .collect();
        return Some(Json::Object(vars));
    }
    match r.below(20) {
        0..=4 => return None,
        5 => return Some(any_json(r, 2)),
        _ => {}
    }
    let mut m = serde_json::Map::new();
    for (name, ty) in defs {
        match r.below(20) {
            0..=14 => m.insert(name.clone(), json_for(r, ty, 0, false)),
            15 | 16 => m.insert(name.clone(), any_json(r, 1)),
            _ => None,
        };
    }
    if r.one_in(5) {
        m.insert(r.pick(NAMES).to_owned(), any_json(r, 1));
    }
    if r.one_in(20) {
        let name = defs.first().map_or("deep".to_owned(), |(n, _)| n.clone());
        let d = r.range(20, 120);
        m.insert(name, deep_json(r, d));
    }
    Some(Json::Object(m))
}

fn operation_name(r: &mut Rng, doc: &Document) -> Option<String> {
    let names = &doc.operation_names;
    if doc.clean {
        return match names.len() {
            0 => None,
            1 if r.one_in(2) => None,
            n => Some(names[r.below(n)].clone()),
        };
    }
    match r.below(10) {
        0..=5 if !names.is_empty() => Some(names[r.below(names.len())].clone()),
        6 => Some(r.pick(&["", "Nope", "Q", "query"]).to_owned()),
        _ => None,
    }
}

/// A POST body that is a request object, some of its members missing, null or mistyped.
fn request_object(r: &mut Rng) -> Json {
    let doc = document(r);
    let mut m = serde_json::Map::new();
    let mut members = vec![];
    let (mistyped, missing) = if doc.clean { (40, 20) } else { (12, 4) };
    members.push((
        "query",
        if r.one_in(mistyped) {
            any_json(r, 2)
        } else {
            json!(doc.text)
        },
    ));
    match r.below(mistyped) {
        0 => members.push(("variables", any_json(r, 2))),
        1 => members.push(("variables", json!("{}"))),
        _ if r.one_in(missing) => {}
        _ => {
            if let Some(v) = variables(r, &doc) {
                members.push(("variables", v));
            }
        }
    }
    match r.below(mistyped) {
        0 => members.push(("operationName", any_json(r, 2))),
        _ if r.one_in(missing) => {}
        _ => {
            if let Some(n) = operation_name(r, &doc) {
                members.push(("operationName", json!(n)));
            }
        }
    }
    match r.below(20) {
        0 | 1 => members.push(("extensions", any_json(r, 3))),
        2 => {
            let d = r.range(20, 120);
            members.push(("extensions", json!({ "persistedQuery": deep_json(r, d) })))
        }
        _ => {}
    }
    if r.one_in(10) {
        members.push(("extra", any_json(r, 2)));
    }
    if r.one_in(missing * 5) {
        members.remove(0);
    }
    // Member order varies.
    for i in (1..members.len()).rev() {
        members.swap(i, r.below(i + 1));
    }
    for (k, v) in members {
        m.insert(k.to_owned(), v);
    }
    Json::Object(m)
}

/// JSON text nested `depth` deep, past serde's own limit of 128 sometimes.
fn deep_json_text(r: &mut Rng, depth: usize) -> String {
    let (open, close) = if r.one_in(2) {
        ("[", "]")
    } else {
        ("{\"query\":", "}")
    };
    format!("{}1{}", open.repeat(depth), close.repeat(depth))
}

fn mutate_bytes(r: &mut Rng, mut b: Vec<u8>) -> Vec<u8> {
    const BYTES: &[u8] = b"{}[]:,\"\\\x00\xff\xc3\xe2\x80 \n";
    for _ in 0..r.range(1, 4) {
        if b.is_empty() {
            break;
        }
        let i = r.below(b.len());
        let len = r.range(1, 8).min(b.len() - i);
        match r.below(5) {
            0 => {
                b.drain(i..i + len);
            }
            1 => {
                let dup = b[i..i + len].to_vec();
                b.splice(i..i, dup);
            }
            2 => b.insert(i, r.pick(BYTES)),
            3 => b[i] = r.pick(BYTES),
            _ => b.truncate(i),
        }
    }
    b
}

fn post_body(r: &mut Rng) -> Vec<u8> {
    match r.below(100) {
        0..=64 => request_object(r).to_string().into_bytes(),
        65..=67 => any_json(r, 0).to_string().into_bytes(),
        68 | 69 => {
            let d = r.range(50, 400);
            deep_json_text(r, d).into_bytes()
        }
        70..=84 => {
            let b = request_object(r).to_string().into_bytes();
            mutate_bytes(r, b)
        }
        85..=94 => r
            .pick(&[
                "",
                " \n",
                "\u{feff}{\"query\":\"{__typename}\"}",
                "null",
                "{}",
                "[]",
                "{\"query\": null}",
                "{\"query\":\"{a}\",\"query\":\"{__typename}\"}",
                "{\"query\":\"{__typename}\"} trailing",
                "{\"query\":\"\\ud800\"}",
                "\"{__typename}\"",
            ])
            .as_bytes()
            .to_vec(),
        _ => {
            let items: Vec<Json> = (0..r.range(1, 3)).map(|_| request_object(r)).collect();
            Json::Array(items).to_string().into_bytes()
        }
    }
}

const ACCEPTS: &[&str] = &[
    "application/json",
    "application/graphql-response+json",
    "*/*",
    "application/*",
    "text/html",
    "application/xml",
    "application/json;q=0",
    "application/graphql-response+json;q=0.5, application/json;q=0.5",
    "application/json; charset=latin1",
    ";;;,,,",
    "*/json",
    "application/json;q=2",
    "text/html, application/json;q=0.9",
];
/// No `Accept` (the usual), a good one, or sometimes an odd one.
fn accept(r: &mut Rng) -> Option<String> {
    match r.below(10) {
        0..=4 => None,
        5..=7 => Some(r.pick(&ACCEPTS[..4]).to_owned()),
        _ => Some(r.pick(ACCEPTS).to_owned()),
    }
}

const CONTENT_TYPES: &[&str] = &[
    "application/json; charset=utf-8",
    "application/json;charset=UTF-16",
    "text/plain",
    "application/graphql",
    "",
    "application/json; charset=\"utf8\"; foo=bar",
    "APPLICATION/JSON",
    "multipart/form-data; boundary=x",
    "application/x-www-form-urlencoded",
];

// ----------------------------------------------------------------------------------------
// Cases
// ----------------------------------------------------------------------------------------

#[derive(Clone, Debug, Serialize, Deserialize)]
enum Case {
    /// `Gateway::execute`, in process, on a worker.
    Execute {
        query: String,
        variables: Option<Json>,
        operation_name: Option<String>,
        trace: bool,
    },
    /// POST /graphql.
    Post {
        body: Body,
        content_type: Option<String>,
        accept: Option<String>,
        encoding: Option<String>,
        trace: bool,
    },
    /// GET /graphql?{query_string}.
    Get {
        query_string: String,
        accept: Option<String>,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum Body {
    Text(String),
    Bytes(Vec<u8>),
}

impl Case {
    fn kind(&self) -> &'static str {
        match self {
            Case::Execute { .. } => "in process",
            Case::Post { .. } => "POST",
            Case::Get { .. } => "GET",
        }
    }

    /// The case for people: the query text as is.
    fn readable(&self) -> String {
        match self {
            Case::Execute {
                query,
                variables,
                operation_name,
                trace,
            } => format!(
                "gateway.execute, trace {trace}, operationName {operation_name:?}\n\
                 variables: {}\nquery ({} bytes):\n{query}",
                variables.as_ref().map_or("none".into(), |v| v.to_string()),
                query.len()
            ),
            Case::Post {
                body,
                content_type,
                accept,
                encoding,
                trace,
            } => {
                let body = match body {
                    Body::Text(t) => t.clone(),
                    Body::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
                };
                format!(
                    "POST /graphql, Content-Type {content_type:?}, Accept {accept:?}, \
                     Content-Encoding {encoding:?}, trace {trace}\nbody ({} bytes):\n{body}",
                    body.len()
                )
            }
            Case::Get {
                query_string,
                accept,
            } => format!("GET /graphql?{query_string}\nAccept {accept:?}"),
        }
    }

    fn size(&self) -> usize {
        match self {
            Case::Execute { query, .. } => query.len(),
            Case::Post {
                body: Body::Text(t),
                ..
            } => t.len(),
            Case::Post {
                body: Body::Bytes(b),
                ..
            } => b.len(),
            Case::Get { query_string, .. } => query_string.len(),
        }
    }
}

/// Case `index` of the run with `seed`.
fn case(seed: u64, index: usize) -> Case {
    let mut r = Rng(seed ^ (index as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
    r.next();
    match r.below(100) {
        0..=54 => {
            let doc = document(&mut r);
            Case::Execute {
                variables: variables(&mut r, &doc),
                operation_name: operation_name(&mut r, &doc),
                trace: r.one_in(4),
                query: doc.text,
            }
        }
        55..=84 => {
            let body = post_body(&mut r);
            let body = match String::from_utf8(body) {
                Ok(t) => Body::Text(t),
                Err(e) => Body::Bytes(e.into_bytes()),
            };
            Case::Post {
                body,
                content_type: match r.below(20) {
                    0 => None,
                    1 | 2 => Some(r.pick(CONTENT_TYPES).to_owned()),
                    _ => Some("application/json".to_owned()),
                },
                accept: accept(&mut r),
                encoding: r
                    .one_in(30)
                    .then(|| r.pick(&["gzip", "identity"]).to_owned()),
                trace: r.one_in(4),
            }
        }
        _ => {
            let doc = document(&mut r);
            let mut qs = url::form_urlencoded::Serializer::new(String::new());
            if !r.one_in(12) {
                qs.append_pair("query", &doc.text);
            }
            match r.below(10) {
                0..=3 => {
                    if let Some(v) = variables(&mut r, &doc) {
                        qs.append_pair("variables", &v.to_string());
                    }
                }
                4 => {
                    qs.append_pair("variables", r.pick(&["{", "[1]", "null", "", "\"{}\""]));
                }
                _ => {}
            }
            if let Some(n) = operation_name(&mut r, &doc) {
                qs.append_pair("operationName", &n);
            }
            if r.one_in(20) {
                qs.append_pair("extensions", &any_json(&mut r, 2).to_string());
            }
            if r.one_in(30) {
                qs.append_pair("query", "{ __typename }");
            }
            let mut query_string = qs.finish();
            if r.one_in(10) {
                query_string.push_str(r.pick(&[
                    "&%zz",
                    "&query=%FF%FE",
                    "&&&",
                    "&variables",
                    "&query",
                    "&operationName=%00",
                    ";query={a}",
                    "&%E2%82",
                ]));
            }
            Case::Get {
                query_string,
                accept: accept(&mut r),
            }
        }
    }
}

// ----------------------------------------------------------------------------------------
// Running a case
// ----------------------------------------------------------------------------------------

/// What a response was: `data`, or the request error's code.
fn classify(resp: &async_graphql::Response) -> String {
    let refused = resp.data == ConstValue::Null
        && !resp.errors.is_empty()
        && resp.errors.iter().all(|e| e.path.is_empty());
    if !refused {
        return "data".to_owned();
    }
    let code = resp.errors[0]
        .extensions
        .as_ref()
        .and_then(|x| x.get("code"))
        .map(|c| match c {
            ConstValue::String(s) => s.clone(),
            other => other.to_string(),
        });
    format!("refused {}", code.as_deref().unwrap_or("(no code)"))
}

fn classify_http(status: u16, content_type: &str, body: &[u8]) -> String {
    let Ok(json) = serde_json::from_slice::<Json>(body) else {
        if content_type.starts_with("text/html") {
            return "GraphiQL page".to_owned();
        }
        return format!("http {status} (not JSON)");
    };
    if json.get("data").is_some() {
        return "data".to_owned();
    }
    match json["errors"][0]["extensions"]["code"].as_str() {
        Some(code) => format!("refused {code}"),
        None => format!("http {status}"),
    }
}

/// Runs `case` and says what the answer was; `Err` is a failure (not a refusal).
async fn perform(env: Arc<Env>, case: Case) -> Result<String, String> {
    let sent = match case {
        Case::Execute {
            query,
            variables,
            operation_name,
            trace,
        } => {
            let mut req = async_graphql::Request::new(query);
            if let Some(v) = variables {
                req = req.variables(async_graphql::Variables::from_json(v));
            }
            if let Some(n) = operation_name {
                req = req.operation_name(n);
            }
            let resp = env.gw.execute(req, HeaderMap::new(), trace).await;
            serde_json::to_vec(&resp)
                .map_err(|e| format!("the response does not serialize: {e}"))?;
            return Ok(classify(&resp));
        }
        Case::Post {
            body,
            content_type,
            accept,
            encoding,
            trace,
        } => {
            let body = match body {
                Body::Text(t) => t.into_bytes(),
                Body::Bytes(b) => b,
            };
            let mut req = env.http.post(&env.url).body(body);
            if let Some(ct) = content_type {
                req = req.header("content-type", ct);
            }
            if let Some(a) = accept {
                req = req.header("accept", a);
            }
            if let Some(e) = encoding {
                req = req.header("content-encoding", e);
            }
            if trace {
                req = req.header("x-fanout-trace", "1");
            }
            req.send().await
        }
        Case::Get {
            query_string,
            accept,
        } => {
            let mut req = env.http.get(format!("{}?{query_string}", env.url));
            if let Some(a) = accept {
                req = req.header("accept", a);
            }
            req.send().await
        }
    };
    let resp = match sent {
        Ok(resp) => resp,
        Err(e) if e.is_builder() => return Ok("not sendable by the client".to_owned()),
        Err(e) => return Err(format!("no HTTP answer: {e:?}")),
    };
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = resp
        .bytes()
        .await
        .map_err(|e| format!("the answer's body broke off: {e:?}"))?;
    if status >= 500 {
        return Err(format!(
            "answered {status}: {}",
            String::from_utf8_lossy(&body)
        ));
    }
    Ok(classify_http(status, &content_type, &body))
}

/// Panics on the fuzz runtime's threads, wherever they happen (server connections too).
static PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn record_worker_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().name() == Some(WORKER_NAME) {
                PANICS
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(info.to_string());
            }
            previous(info);
        }));
    });
}

fn panics() -> Vec<String> {
    PANICS.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Runs `case` on a worker. `Ok`: how long it took and what the answer was.
fn run_case(rt: &Runtime, env: &Arc<Env>, case: &Case) -> Result<(Duration, String), String> {
    let panics_before = panics().len();
    let (tx, rx) = mpsc::channel();
    let start = Instant::now();
    let task = rt.spawn(perform(env.clone(), case.clone()));
    rt.spawn(async move {
        let _ = tx.send(task.await);
    });
    // A std channel, not a tokio timer: a case that hogs a worker must not stop the clock.
    let joined = rx
        .recv_timeout(CASE_LIMIT)
        .map_err(|_| format!("not finished after {CASE_LIMIT:?}"))?;
    let took = start.elapsed();
    let new_panics = panics().split_off(panics_before);
    if !new_panics.is_empty() {
        return Err(format!("panicked: {}", new_panics.join("\n")));
    }
    match joined {
        Err(e) if e.is_panic() => {
            let payload = e.into_panic();
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            Err(format!("panicked: {msg}"))
        }
        Err(e) => Err(format!("the case's task failed: {e}")),
        Ok(Err(e)) => Err(e),
        Ok(Ok(class)) => Ok((took, class)),
    }
}

/// The file that holds the running case, and the failed one afterwards.
struct Journal {
    path: PathBuf,
    file: std::fs::File,
}

impl Journal {
    fn open(path: PathBuf) -> Journal {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        let file = std::fs::File::create(&path).unwrap();
        Journal { path, file }
    }

    fn write(&mut self, seed: u64, index: usize, at: Duration, case: &Case, status: &str) {
        let text = format!(
            "Fanout fuzz case #{index} of seed {seed} ({}), started {:.2} s into the run.\n\
             {status}\n\
             Replay: FANOUT_FUZZ_REPLAY={} cargo test --test api fuzz -- --nocapture\n\
             case: {}\n\
             ----\n{}\n",
            case.kind(),
            at.as_secs_f64(),
            self.path.display(),
            serde_json::to_string(case).unwrap(),
            case.readable()
        );
        self.file.set_len(0).unwrap();
        self.file.seek(SeekFrom::Start(0)).unwrap();
        self.file.write_all(text.as_bytes()).unwrap();
    }
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

fn seed_from_env() -> u64 {
    match std::env::var("FANOUT_FUZZ_SEED") {
        Ok(s) => {
            let s = s.trim();
            match s.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => s.parse(),
            }
            .unwrap_or_else(|_| panic!("FANOUT_FUZZ_SEED={s} is not a number"))
        }
        Err(_) => {
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap();
            let mut r = Rng(now.as_nanos() as u64 ^ (u64::from(std::process::id()) << 32));
            r.next() % 1_000_000_000
        }
    }
}

#[derive(Default)]
struct Stats {
    by_kind: BTreeMap<&'static str, usize>,
    answers: BTreeMap<String, usize>,
    slowest: Option<(Duration, usize, &'static str, usize)>,
}

impl Stats {
    fn add(&mut self, index: usize, case: &Case, took: Duration, answer: String) {
        *self.by_kind.entry(case.kind()).or_default() += 1;
        *self.answers.entry(answer).or_default() += 1;
        if self.slowest.is_none_or(|(t, ..)| took > t) {
            self.slowest = Some((took, index, case.kind(), case.size()));
        }
    }

    fn print(&self, elapsed: Duration) {
        let total: usize = self.by_kind.values().sum();
        let kinds: Vec<String> = self
            .by_kind
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect();
        println!(
            "fuzz: {total} cases in {:.1} s ({:.0}/s): {}",
            elapsed.as_secs_f64(),
            total as f64 / elapsed.as_secs_f64().max(1e-9),
            kinds.join(", ")
        );
        for (answer, n) in &self.answers {
            println!("fuzz:   {n:>7}  {answer}");
        }
        if let Some((took, index, kind, size)) = self.slowest {
            println!("fuzz: slowest: case #{index} ({kind}, {size} bytes), {took:.1?}");
        }
    }
}

#[test]
fn fuzz_the_request_front_end() {
    record_worker_panics();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_stack_size(WORKER_STACK)
        .thread_name(WORKER_NAME)
        .enable_all()
        .build()
        .unwrap();
    let mut env = Arc::new(rt.block_on(Env::start()));

    if let Ok(file) = std::env::var("FANOUT_FUZZ_REPLAY") {
        let text = std::fs::read_to_string(&file).unwrap();
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix("case: "))
            .expect("a fuzz failure file has a `case: ` line");
        let case: Case = serde_json::from_str(line).unwrap();
        println!("fuzz: replaying {file}:\n{}", case.readable());
        let result = run_case(&rt, &env, &case);
        rt.block_on(async move { drop(env) });
        rt.shutdown_background();
        match result {
            Ok((took, answer)) => println!("fuzz: passed in {took:.1?}: {answer}"),
            Err(why) => panic!("fuzz: the case FAILED: {why}"),
        }
        return;
    }

    let secs: f64 = std::env::var("FANOUT_FUZZ_SECS")
        .ok()
        .map(|s| s.trim().parse().expect("FANOUT_FUZZ_SECS is a number"))
        .unwrap_or(DEFAULT_SECS);
    let seed = seed_from_env();
    let path = target_dir().join(format!("fuzz-failure-{seed}.txt"));
    println!(
        "fuzz: seed {seed} (FANOUT_FUZZ_SEED={seed} repeats this run), {secs} s; \
         the running case is kept in {}",
        path.display()
    );
    let mut journal = Journal::open(path.clone());
    let mut stats = Stats::default();
    let start = Instant::now();
    let mut index = 0;
    let failure = loop {
        if start.elapsed().as_secs_f64() >= secs {
            break None;
        }
        if index > 0 && index % CASES_PER_ENV == 0 {
            let old = std::mem::replace(&mut env, Arc::new(rt.block_on(Env::start())));
            rt.block_on(async move { drop(old) });
        }
        let case = case(seed, index);
        let at = start.elapsed();
        journal.write(
            seed,
            index,
            at,
            &case,
            "RUNNING: if the run is over and this file is still here, this case killed the \
             process (a stack overflow or an abort).",
        );
        match run_case(&rt, &env, &case) {
            Ok((took, answer)) => stats.add(index, &case, took, answer),
            Err(why) => break Some((index, at, case, why)),
        }
        index += 1;
    };
    let elapsed = start.elapsed();
    rt.block_on(async move { drop(env) });
    // A case that timed out may still hold a worker; do not wait for it.
    rt.shutdown_background();
    stats.print(elapsed);
    match failure {
        None => {
            drop(journal);
            let _ = std::fs::remove_file(&path);
        }
        Some((index, at, case, why)) => {
            journal.write(seed, index, at, &case, &format!("FAILED: {why}"));
            let mut shown = case.readable();
            if shown.len() > 2000 {
                let mut cut = 2000;
                while !shown.is_char_boundary(cut) {
                    cut -= 1;
                }
                shown.truncate(cut);
                shown.push_str(" [...]");
            }
            panic!(
                "fuzz: case #{index} of seed {seed} (started {:.2} s into the run) FAILED: {why}\n\
                 {shown}\nThe whole case is in {}; replay it with FANOUT_FUZZ_REPLAY={} \
                 cargo test --test api fuzz -- --nocapture",
                at.as_secs_f64(),
                path.display(),
                path.display()
            );
        }
    }
}
