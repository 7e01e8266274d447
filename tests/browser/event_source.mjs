// Reads longconn-server's room with the browser's own EventSource, in
// headless Chromium: opens the page's origin, then `new EventSource("/events")`.
//
//   node event_source.mjs ORIGIN EXPECTED_TEXT...
//
// Prints "open" once the stream is open (the test waits for it before the
// other clients speak), then "saw: ID TEXT" for each expected text, with
// the event's lastEventId.
import { launch } from "./launch.mjs";

const [origin, ...expected] = process.argv.slice(2);
const browser = await launch();
try {
  const page = await browser.newPage();
  await page.goto(origin + "/");
  await page.evaluate(() => new Promise((resolve, reject) => {
    window.got = [];
    const source = new EventSource("/events");
    source.onmessage = (e) => window.got.push({ id: e.lastEventId, data: e.data });
    source.onopen = () => resolve();
    source.onerror = () => reject(new Error("EventSource failed"));
  }));
  console.log("open");
  for (const text of expected) {
    const found = await page.waitForFunction(
      (text) => window.got.find((e) => e.data.endsWith(text)), text, { timeout: 10000 });
    const event = await found.jsonValue();
    console.log("saw: " + event.id + " " + event.data);
  }
} finally {
  await browser.close();
}
