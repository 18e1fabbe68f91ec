// Verify a quickrouter-tracker webhook (Standard Webhooks) with Node's own crypto: no package.
// Give it the raw body as received (a string or a Buffer), never JSON parsed and re-encoded.
const crypto = require("node:crypto");

function verify(secret, headers, rawBody, toleranceSeconds = 300) {
  const id = headers["webhook-id"];
  const timestamp = headers["webhook-timestamp"];
  const signatures = headers["webhook-signature"];
  if (!id || !timestamp || !signatures) throw new Error("missing webhook headers");
  // A replayed request carries an old timestamp: refuse one more than 5 minutes off.
  if (Math.abs(Date.now() / 1000 - Number(timestamp)) > toleranceSeconds) {
    throw new Error("timestamp out of tolerance");
  }
  const key = Buffer.from(secret.replace(/^whsec_/, ""), "base64");
  const expected = crypto
    .createHmac("sha256", key)
    .update(`${id}.${timestamp}.`)
    .update(rawBody)
    .digest();
  // Two signatures, space separated, while a secret rotates: either one will do.
  for (const entry of signatures.split(" ")) {
    const [version, signature] = entry.split(",", 2);
    if (version !== "v1" || !signature) continue;
    const given = Buffer.from(signature, "base64");
    if (given.length === expected.length && crypto.timingSafeEqual(given, expected)) {
      return JSON.parse(rawBody);
    }
  }
  throw new Error("no valid signature");
}

module.exports = { verify };

// With Express: app.post("/hooks", express.raw({ type: "application/json" }), (req, res) => {
//   try { const event = verify(secret, req.headers, req.body); ... res.sendStatus(204); }
//   catch { res.sendStatus(400); }
// });

if (require.main === module) {
  // `node verify.js` reads {"secret", "headers", "body"} as JSON on stdin and prints the
  // event's type, or the reason it was refused (exit status 1).
  let input = "";
  process.stdin.on("data", (chunk) => (input += chunk));
  process.stdin.on("end", () => {
    const { secret, headers, body } = JSON.parse(input);
    try {
      console.log(verify(secret, headers, body).type);
    } catch (error) {
      console.error(error.message);
      process.exit(1);
    }
  });
}
