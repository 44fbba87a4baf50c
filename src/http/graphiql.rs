//! The GraphiQL page. Its assets come from a configurable base URL, so a machine without
//! internet can serve them itself.

pub const DEFAULT_ASSETS: &str = "https://unpkg.com";

/// The page, posting to the URL it was served from, loading React and GraphiQL from `assets` (`{assets}/react@18/...`).
/// Requests carry `x-fanout-trace: 1`, so every answer shows the upstream calls it cost.
pub fn page(assets: &str) -> String {
    let assets = assets.trim_end_matches('/');
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Fanout GraphiQL</title>
  <style>body {{ margin: 0; height: 100vh; }} #graphiql {{ height: 100vh; }}</style>
  <link rel="stylesheet" href="{assets}/graphiql@3/graphiql.min.css">
</head>
<body>
  <div id="graphiql">Loading GraphiQL from {assets} ...</div>
  <script src="{assets}/react@18/umd/react.production.min.js"></script>
  <script src="{assets}/react-dom@18/umd/react-dom.production.min.js"></script>
  <script src="{assets}/graphiql@3/graphiql.min.js"></script>
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
