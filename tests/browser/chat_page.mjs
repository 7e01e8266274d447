// Joins longconn-server's chat page in headless Chromium, says one line, and
// waits for lines from the other clients in the room.
//
//   node chat_page.mjs URL LINE_TO_SEND EXPECTED_TEXT...
//
// Prints "connected" once the page is in the room (the test waits for it
// before the other clients speak), then "saw: TEXT" for each expected text.
import { launch } from "./launch.mjs";

const [url, line, ...expected] = process.argv.slice(2);
const browser = await launch();
try {
  const page = await browser.newPage();
  await page.goto(url);
  await page.locator("#log", { hasText: "[connected]" }).waitFor({ timeout: 10000 });
  console.log("connected");
  await page.fill("#line", line);
  await page.press("#line", "Enter");
  for (const text of expected) {
    await page.locator("#log div", { hasText: text }).first().waitFor({ timeout: 10000 });
    console.log("saw: " + text);
  }
} finally {
  await browser.close();
}
