// GraphiQL in a real browser, offline: opens the page of a running `fanout --demo
// --graphiql-dir DIR`, types the dashboard query into the editor, runs it, and waits for the
// answer. Every request that does not go to 127.0.0.1 is blocked, and any such attempt fails
// the test: GraphiQL must need nothing from the internet.
//
//   node graphiql.mjs http://127.0.0.1:PORT/PREFIX/graphql [screenshot.png]
//
// run.sh starts Fanout and runs this. CHROMIUM overrides the browser (default /usr/bin/chromium).
import { chromium } from "playwright-core";

const [pageUrl, screenshot = "/tmp/graphiql.png"] = process.argv.slice(2);
if (!pageUrl) {
  console.error("usage: node graphiql.mjs http://127.0.0.1:PORT/graphql [screenshot.png]");
  process.exit(2);
}

const QUERY = `query Dashboard {
user(id: "1") {
name email role
team { name lead { name email } }
permissions
orders(first: 5) { id total status placedAt product { name price category } }
}
}`;

// playwright gives the browser a fresh profile of its own in a temporary directory.
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});

const offsite = []; // requests that tried to leave 127.0.0.1
const problems = []; // page errors and failed local requests
let status = 1;
try {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const page = await context.newPage();
  await page.route("**/*", (route) => {
    const url = route.request().url();
    let local = false;
    try {
      const u = new URL(url);
      local = u.hostname === "127.0.0.1" || u.protocol === "data:" || u.protocol === "blob:";
    } catch {}
    if (local) return route.continue();
    offsite.push(url);
    return route.abort("blockedbyclient");
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("response", (r) => {
    if (r.status() >= 400) problems.push(`HTTP ${r.status()} for ${r.url()}`);
  });
  page.on("requestfailed", (r) => {
    if (!offsite.includes(r.url())) problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`);
  });

  await page.goto(pageUrl, { waitUntil: "load", timeout: 30_000 });
  // The query editor (CodeMirror): click into it, replace its text with the dashboard query.
  const editor = page.locator(".graphiql-query-editor .CodeMirror").first();
  await editor.waitFor({ state: "visible", timeout: 30_000 });
  await editor.click();
  await page.keyboard.press("Control+A");
  await page.keyboard.press("Delete");
  // insertText types the text as one input, so the editor's auto-closing brackets stay out.
  await page.keyboard.insertText(QUERY);
  const typed = await page.evaluate(
    () => document.querySelector(".graphiql-query-editor .CodeMirror").CodeMirror.getValue(),
  );
  if (typed.replace(/\s+/g, " ") !== QUERY.replace(/\s+/g, " ")) {
    throw new Error(`the editor holds something else than the query:\n${typed}`);
  }

  const answered = page.waitForResponse(
    (r) => r.request().method() === "POST" && new URL(r.url()).pathname.endsWith("/graphql"),
    { timeout: 30_000 },
  );
  await page.locator("button.graphiql-execute-button").click();
  const response = await answered;
  const body = await response.json();
  if (response.status() !== 200 || body.errors) {
    throw new Error(`the query failed: ${response.status()} ${JSON.stringify(body)}`);
  }
  // The result pane shows the answer (and the trace of upstream calls GraphiQL asked for).
  const result = page.locator(".graphiql-response .CodeMirror");
  await result.filter({ hasText: "Ada Lovelace" }).waitFor({ timeout: 30_000 });
  const shown = await page.evaluate(
    () => document.querySelector(".graphiql-response .CodeMirror").CodeMirror.getValue(),
  );
  if (!shown.includes('"calls"')) {
    throw new Error(`the result pane lacks the trace (x-fanout-trace):\n${shown}`);
  }
  await page.screenshot({ path: screenshot });

  if (offsite.length) throw new Error(`requests left 127.0.0.1:\n  ${offsite.join("\n  ")}`);
  if (problems.length) throw new Error(`the page had problems:\n  ${problems.join("\n  ")}`);
  console.log(`GraphiQL at ${pageUrl}: ran the dashboard query offline; screenshot ${screenshot}`);
  console.log("1 passed, 0 failed");
  status = 0;
} catch (e) {
  console.error(`graphiql: ${e.stack || e}`);
  if (offsite.length) console.error(`requests that tried to leave 127.0.0.1:\n  ${offsite.join("\n  ")}`);
  if (problems.length) console.error(`page problems:\n  ${problems.join("\n  ")}`);
  console.log("0 passed, 1 failed");
} finally {
  await browser.close();
}
process.exit(status);
