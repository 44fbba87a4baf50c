//! The GraphiQL page. Its assets come from a configurable base URL (`--graphiql-assets`), or
//! from a local directory that Fanout serves itself (`--graphiql-dir`), so a machine without
//! internet can still show GraphiQL.

pub const DEFAULT_ASSETS: &str = "https://unpkg.com";

/// Where Fanout serves `--graphiql-dir`, under its own routes: `/graphql/assets/<file>`.
pub const ASSETS_ROUTE: &str = "/graphql/assets";

/// The files a `--graphiql-dir` holds (`tests/browser/assets.sh DIR` copies them from npm):
/// React 18's and ReactDOM 18's UMD builds, and GraphiQL 3's script and style sheet.
pub const FILES: [&str; 4] = [
    "react.production.min.js",
    "react-dom.production.min.js",
    "graphiql.min.js",
    "graphiql.min.css",
];

/// The page, loading React and GraphiQL from `assets` (`{assets}/react@18/...`, a CDN layout).
pub fn page(assets: &str) -> String {
    let assets = assets.trim_end_matches('/');
    render(
        assets,
        [
            format!("{assets}/react@18/umd/react.production.min.js"),
            format!("{assets}/react-dom@18/umd/react-dom.production.min.js"),
            format!("{assets}/graphiql@3/graphiql.min.js"),
        ],
        &format!("{assets}/graphiql@3/graphiql.min.css"),
    )
}

/// The page, loading its assets from Fanout itself ([`ASSETS_ROUTE`]).
///
/// The URLs are relative to the page's own, so they hold under `--path-prefix` and when the
/// routes are nested in another app: the page is always served at `<prefix>/graphql` (no
/// trailing slash), whose base is `<prefix>/`, so `graphql/assets/x` resolves to
/// `<prefix>/graphql/assets/x`.
pub fn local_page() -> String {
    let base = ASSETS_ROUTE.trim_start_matches('/');
    let [react, react_dom, graphiql, css] = FILES.map(|f| format!("{base}/{f}"));
    render("this server", [react, react_dom, graphiql], &css)
}

fn render(from: &str, [react, react_dom, graphiql]: [String; 3], css: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Fanout GraphiQL</title>
  <style>body {{ margin: 0; height: 100vh; }} #graphiql {{ height: 100vh; }}</style>
  <link rel="stylesheet" href="{css}">
</head>
<body>
  <div id="graphiql">Loading GraphiQL from {from} ...</div>
  <script src="{react}"></script>
  <script src="{react_dom}"></script>
  <script src="{graphiql}"></script>
  <script>
    const fetcher = GraphiQL.createFetcher({{
      url: window.location.origin + window.location.pathname,
      headers: {{ "x-fanout-trace": "1" }},
    }});
    ReactDOM.createRoot(document.getElementById("graphiql"))
      .render(React.createElement(GraphiQL, {{ fetcher, defaultEditorToolsVisibility: true }}));
  </script>
</body>
</html>
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cdn_page_loads_from_the_base_url() {
        let html = page("https://cdn.example/");
        assert!(html.contains(r#"src="https://cdn.example/react@18/umd/react.production.min.js""#));
        assert!(html.contains(r#"href="https://cdn.example/graphiql@3/graphiql.min.css""#));
    }

    #[test]
    fn the_local_page_loads_every_file_relative_to_itself() {
        let html = local_page();
        for file in FILES {
            assert!(
                html.contains(&format!(r#""graphql/assets/{file}""#)),
                "{file}: {html}"
            );
        }
        assert!(!html.contains("https://"), "{html}");
        // From `/gw/graphql`, `graphql/assets/x` is `/gw/graphql/assets/x`.
        let page = url::Url::parse("http://h/gw/graphql?x=1").unwrap();
        let asset = page.join("graphql/assets/graphiql.min.js").unwrap();
        assert_eq!(asset.path(), "/gw/graphql/assets/graphiql.min.js");
    }
}
