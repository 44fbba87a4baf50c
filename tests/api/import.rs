//! `fanout import openapi`: real OpenAPI documents nobody here wrote (`tests/openapi/`) become
//! schemas `fanout check` passes, and one is served against a mock built from the same
//! document.

use std::{path::PathBuf, process::Output};

use serde_json::{Map, Value as Json, json};

use crate::support::{Fanout, Mock, Reply};

const FIXTURES: [&str; 6] = [
    "petstore.yaml",
    "petstore-expanded.json",
    "webhook-example.yaml",
    "tictactoe.yaml",
    "swagger-petstore-3.1.yaml",
    "box.json",
];

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/openapi")
        .join(name)
}

fn fanout(args: &[&str]) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_fanout"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("FANOUT_")) {
        cmd.env_remove(k);
    }
    cmd.args(args).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `fanout import openapi FILE ARGS`: the schema (stdout) and the notes (stderr).
fn import(name: &str, args: &[&str]) -> (String, String) {
    let file = fixture(name);
    let mut all = vec!["import", "openapi", file.to_str().unwrap()];
    all.extend(args);
    let out = fanout(&all);
    assert!(
        out.status.success(),
        "import of {name} failed: {}",
        text(&out.stderr)
    );
    (text(&out.stdout), text(&out.stderr))
}

/// The schema as the library writes it, its base URL pointed at `base_url`.
fn import_lib(name: &str, base_url: &str) -> String {
    let source = std::fs::read_to_string(fixture(name)).unwrap();
    let opts = fanout::import::Options {
        base_url: Some(base_url.to_owned()),
        source: name.to_owned(),
        ..Default::default()
    };
    fanout::import::openapi(&source, &opts).unwrap().sdl
}

#[test]
fn every_real_document_imports_and_passes_fanout_check() {
    let dir = std::env::temp_dir().join(format!("fanout-import-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for name in FIXTURES {
        let (sdl, stderr) = import(name, &[]);
        assert!(sdl.contains("type Query {"), "{name}: {sdl}");
        assert!(stderr.contains("fanout import: "), "{name}: {stderr}");
        let path = dir.join(format!("{name}.graphql"));
        std::fs::write(&path, &sdl).unwrap();
        let check = fanout(&["check", "--schema", path.to_str().unwrap()]);
        assert!(
            check.status.success(),
            "fanout check refused the import of {name}:\n{}",
            text(&check.stderr)
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_petstore_becomes_query_fields_mutations_and_types() {
    let (sdl, stderr) = import("petstore.yaml", &[]);
    assert!(
        sdl.contains(
            r#"@upstream(name: "petstore", baseUrl: "{env.PETSTORE_URL:-http://petstore.swagger.io/v1}")"#
        ),
        "{sdl}"
    );
    for expected in [
        "  listPets(",
        "    limit: Int\n  ): [Pet!]",
        r#"    @rest(upstream: "petstore", path: "/pets",
          query: [{name: "limit", value: "{args.limit}"}])"#,
        "  showPetById(",
        "    petId: ID!\n  ): Pet\n    @rest(upstream: \"petstore\", path: \"/pets/{args.petId}\")",
        "  createPets(input: PetInput!): JSON\n    @rest(upstream: \"petstore\", method: POST, path: \"/pets\", body: \"{args.input}\")",
        "type Pet {\n  id: ID!\n  name: String!\n  tag: String\n}",
        "input PetInput {\n  id: Int64!\n  name: String!\n  tag: String\n}",
        "How many items to return at one time (max 100)",
    ] {
        assert!(sdl.contains(expected), "missing {expected:?} in\n{sdl}");
    }
    assert!(stderr.contains("0 note(s)"), "{stderr}");
}

#[test]
fn openapi_3_1_reads_type_arrays_ids_and_anchors() {
    let (sdl, _) = import("swagger-petstore-3.1.yaml", &[]);
    // `$ref: /components/schemas/petdetails#pet_details_id` names a `$anchor` under an `$id`.
    assert!(sdl.contains("petDetailsId: Int64"), "{sdl}");
    assert!(
        sdl.contains("status: FindPetsByStatusStatus = available"),
        "{sdl}"
    );
    // Credentials are forwarded from the client, never written into the schema.
    assert!(
        sdl.contains(r#"headers: [{name: "authorization", from: "authorization"}, {name: "api_key", from: "api_key"}]"#),
        "{sdl}"
    );
    let v31 = r#"{"openapi": "3.1.0", "info": {"title": "t", "version": "1"},
      "servers": [{"url": "http://127.0.0.1:9"}],
      "paths": {"/things/{id}": {"get": {"operationId": "thing",
        "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
        "responses": {"200": {"description": "ok", "content": {"application/json": {"schema": {
          "type": "object", "required": ["id", "note", "size"],
          "properties": {"id": {"type": "string"}, "note": {"type": ["string", "null"]},
                         "size": {"type": "integer"}, "deprecatedSize": {"type": "integer", "deprecated": true}}}}}}}}}}}"#;
    let out = fanout::import::openapi(v31, &Default::default()).unwrap();
    assert!(out.sdl.contains("type ThingResponse {\n  id: ID!\n  note: String\n  size: Int!\n  deprecatedSize: Int @deprecated\n}"), "{}", out.sdl);
}

#[test]
fn what_cannot_be_mapped_is_named_on_stderr_with_its_openapi_path() {
    let (sdl, stderr) = import("tictactoe.yaml", &[]);
    for expected in [
        "#/components/schemas/mark: the enum value \".\" is not a GraphQL name: typed as String",
        "#/webhooks/markStatus: a webhook is a call the API makes to its clients",
        "#/paths/~1board~1{row}~1{column}/put/parameters/0: an optional header parameter",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in\n{stderr}"
        );
    }
    assert!(sdl.contains("getSquare("), "{sdl}");
    let (_, stderr) = import("box.json", &[]);
    for expected in [
        "#/paths/~1authorize/get: the 200 response is text/html, not JSON; not mapped",
        "#/paths/~1files~1content/options: OPTIONS is not one of Fanout's methods",
        "#/paths/~1files~1content/post/requestBody: the request body is multipart/form-data, not JSON; left out",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in\n{stderr}"
        );
    }
    let (sdl, stderr) = import("webhook-example.yaml", &[]);
    assert!(stderr.contains("#/paths: no GET operation"), "{stderr}");
    assert!(sdl.contains("type Pet {"), "{sdl}");
}

#[test]
fn upstream_and_base_url_flags_name_and_place_the_service() {
    let (sdl, _) = import(
        "petstore.yaml",
        &["--upstream", "pets", "--base-url", "http://127.0.0.1:9/v1"],
    );
    assert!(
        sdl.contains(
            r#"@upstream(name: "pets", baseUrl: "{env.PETS_URL:-http://127.0.0.1:9/v1}")"#
        ),
        "{sdl}"
    );
    assert!(sdl.contains(r#"@rest(upstream: "pets", path: "/pets/{args.petId}")"#));
}

#[test]
fn a_document_that_is_not_openapi_3_is_refused() {
    let dir = std::env::temp_dir().join(format!("fanout-import-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("swagger.json");
    std::fs::write(&file, r#"{"swagger": "2.0", "paths": {}}"#).unwrap();
    let out = fanout(&["import", "openapi", file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("Swagger 2.0"),
        "{}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A JSON value for `schema` as the document describes it: its example where it has one,
/// else made from its type.
fn example(doc: &Json, schema: &Json, depth: usize) -> Json {
    if let Some(r) = schema.get("$ref").and_then(Json::as_str) {
        let target = doc.pointer(r.trim_start_matches('#')).unwrap();
        return example(doc, target, depth);
    }
    if let Some(all) = schema.get("allOf").and_then(Json::as_array) {
        let mut out = Map::new();
        for m in all {
            if let Json::Object(o) = example(doc, m, depth) {
                out.extend(o);
            }
        }
        if out.is_empty() {
            return example(doc, &all[0], depth);
        }
        return Json::Object(out);
    }
    if let Some(one) = schema
        .get("oneOf")
        .or(schema.get("anyOf"))
        .and_then(Json::as_array)
    {
        return example(doc, &one[0], depth);
    }
    if let Some(values) = schema.get("enum").and_then(Json::as_array) {
        return values[0].clone();
    }
    let ty = match schema.get("type") {
        Some(Json::Array(ts)) => ts.iter().find(|t| *t != "null").cloned(),
        other => other.cloned(),
    };
    let ex = schema.get("example").cloned();
    match ty.as_ref().and_then(Json::as_str) {
        Some("string") => ex.filter(Json::is_string).unwrap_or(json!("text")),
        Some("integer") => ex
            .filter(|e| e.as_i64().is_some_and(|i| i.abs() < 1 << 30))
            .unwrap_or(json!(7)),
        Some("number") => ex.filter(Json::is_number).unwrap_or(json!(1.5)),
        Some("boolean") => json!(true),
        Some("array") if depth < 4 => json!([example(doc, &schema["items"], depth + 1)]),
        Some("array") => json!([]),
        _ => {
            let mut out = Map::new();
            if depth < 4
                && let Some(Json::Object(props)) = schema.get("properties")
            {
                for (k, p) in props {
                    out.insert(k.clone(), example(doc, p, depth + 1));
                }
            }
            Json::Object(out)
        }
    }
}

/// A mock of the document's GET operations: each path answers an example of its 200
/// response's schema.
async fn mock_of(name: &str) -> Mock {
    let doc: Json = serde_json::from_str(&std::fs::read_to_string(fixture(name)).unwrap()).unwrap();
    let mut routes = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let Some(schema) = item.pointer("/get/responses/200/content/application~1json/schema")
        else {
            continue;
        };
        let segments: Vec<String> = path
            .split('#')
            .next()
            .unwrap()
            .split('/')
            .map(str::to_owned)
            .collect();
        routes.push((segments, example(&doc, schema, 0)));
    }
    Mock::start(move |r| {
        let got: Vec<&str> = r.path.split('/').collect();
        let found = routes.iter().find(|(want, _)| {
            want.len() == got.len()
                && want
                    .iter()
                    .zip(&got)
                    .all(|(w, g)| w.starts_with('{') || w == g)
        });
        match found {
            Some((_, body)) if r.method == "GET" => Reply::json(body.clone()),
            _ if r.method == "POST" => {
                // A created resource: what was sent, with the id the service gives it.
                let mut sent: Json = serde_json::from_slice(&r.body).unwrap_or(json!({}));
                sent["id"] = json!(8);
                Reply::json(sent)
            }
            _ => Reply::status(404, "{}"),
        }
    })
    .await
}

#[tokio::test]
async fn an_imported_petstore_answers_with_the_data_its_mock_returns() {
    let mock = mock_of("petstore-expanded.json").await;
    let sdl = import_lib("petstore-expanded.json", &mock.url());
    let gw = Fanout::start(&sdl).await;
    let resp = gw
        .query(r#"{ findPets(tags: ["cat", "dog"], limit: 2) { id name tag } findPetById(id: 7) { id name } }"#)
        .await;
    assert!(resp.get("errors").is_none(), "{resp:#}\n{sdl}");
    assert_eq!(
        resp["data"],
        json!({
            "findPets": [{"id": "7", "name": "text", "tag": "text"}],
            "findPetById": {"id": "7", "name": "text"},
        })
    );
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 2, "{reqs:#?}");
    let list = reqs.iter().find(|r| r.path == "/pets").unwrap();
    assert_eq!(
        list.params(),
        [
            ("tags".into(), "cat".into()),
            ("tags".into(), "dog".into()),
            ("limit".into(), "2".into())
        ]
    );
    assert!(reqs.iter().any(|r| r.path == "/pets/7"));

    let resp = gw
        .query(r#"mutation { addPet(input: {name: "Rex", tag: "dog"}) { id name tag } }"#)
        .await;
    assert_eq!(
        resp["data"],
        json!({"addPet": {"id": "8", "name": "Rex", "tag": "dog"}}),
        "{resp:#}"
    );
    let post = mock
        .requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .unwrap();
    assert_eq!(post.path, "/pets");
    assert_eq!(post.json(), json!({"name": "Rex", "tag": "dog"}));
}

#[tokio::test]
async fn an_imported_box_api_answers_with_the_data_its_mock_returns() {
    let mock = mock_of("box.json").await;
    let sdl = import_lib("box.json", &mock.url());
    let gw = Fanout::start(&sdl).await;
    let resp = gw
        .query(r#"{ getFoldersId(folder_id: "0") { id type name description created_by { id name login } } }"#)
        .await;
    assert!(resp.get("errors").is_none(), "{resp:#}");
    let folder = &resp["data"]["getFoldersId"];
    assert_eq!(folder["id"], "12345", "{resp:#}");
    assert_eq!(folder["type"], "folder");
    assert_eq!(folder["created_by"]["login"], "ceo@example.com", "{resp:#}");
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].path, "/folders/0");
}

/// A small document written here: users with a `teamId`, teams by id and by a list of ids.
const TEAMS: &str = r##"
openapi: 3.0.3
info: {title: Teams, version: "1"}
servers: [{url: "http://127.0.0.1:9"}]
paths:
  /users/{id}:
    get:
      operationId: user
      parameters: [{name: id, in: path, required: true, schema: {type: string}}]
      responses:
        "200": {description: ok, content: {application/json: {schema: {$ref: "#/components/schemas/User"}}}}
  /teams/{id}:
    get:
      operationId: team
      parameters: [{name: id, in: path, required: true, schema: {type: string}}]
      responses:
        "200": {description: ok, content: {application/json: {schema: {$ref: "#/components/schemas/Team"}}}}
  /teams:
    get:
      operationId: teams
      parameters: [{name: ids, in: query, explode: false, schema: {type: array, items: {type: string}}}]
      responses:
        "200":
          description: ok
          content:
            application/json:
              schema: {type: object, properties: {data: {type: array, items: {$ref: "#/components/schemas/Team"}}, total: {type: integer}}}
components:
  schemas:
    User:
      type: object
      properties: {id: {type: string}, name: {type: string}, teamId: {type: string}}
    Team:
      type: object
      properties: {id: {type: string}, name: {type: string}}
"##;

#[tokio::test]
async fn a_visible_link_is_proposed_as_a_batch_that_works() {
    let mock = Mock::start(|r| match r.path.as_str() {
        "/users/1" => Reply::json(json!({"id": "1", "name": "Ada", "teamId": "10"})),
        "/teams" => Reply::json(json!({"data": [{"id": "10", "name": "Platform"}], "total": 1})),
        _ => Reply::status(404, "{}"),
    })
    .await;
    let opts = fanout::import::Options {
        base_url: Some(mock.url()),
        ..Default::default()
    };
    let out = fanout::import::openapi(TEAMS, &opts).unwrap();
    assert_eq!(out.proposals, 1);
    assert!(
        out.sdl.contains("  # proposed by fanout import: `teamId` beside `#/paths/~1teams/get`, batched through GET /teams?ids=... (teams). Keep it or delete it.\n  team: Team\n    @rest(upstream: \"teams\", path: \"/teams\", batch: {key: \"{parent.teamId}\", query: \"ids\", match: \"id\"}, select: \"data\")"),
        "{}",
        out.sdl
    );
    // The list endpoint's wrapper is unwrapped, and the comment says what that leaves out.
    assert!(
        out.sdl.contains(
            "# The response wraps its data in `data`; `select` unwraps it and leaves out `total`."
        ),
        "{}",
        out.sdl
    );
    let gw = Fanout::start(&out.sdl).await;
    let resp = gw
        .query(r#"{ user(id: "1") { name team { name } } }"#)
        .await;
    assert_eq!(
        resp["data"],
        json!({"user": {"name": "Ada", "team": {"name": "Platform"}}}),
        "{resp:#}"
    );
    let teams = mock
        .requests()
        .into_iter()
        .find(|r| r.path == "/teams")
        .unwrap();
    assert_eq!(teams.param("ids").as_deref(), Some("10"));
}
