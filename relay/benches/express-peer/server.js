// The peer the relay is measured against (`cargo bench -p relay`): the seed design's relay in
// Express, doing the same work per webhook: Twilio's own signature check
// (`twilio.validateRequest`), the sender allowlist, the message made durable before the 200
// (appended to a journal file and fsynced: node 20 has no built-in SQLite, and a native
// SQLite module would need a download from GitHub), then the TwiML answer.
"use strict";
const express = require("express");
const twilio = require("twilio");
const fs = require("node:fs");

const { PORT, PUBLIC_URL, DATA_DIR, TWILIO_AUTH_TOKEN, ALLOWED_SENDERS } = process.env;
const allowed = new Set(ALLOWED_SENDERS.split(","));
const journal = fs.openSync(`${DATA_DIR}/journal.log`, "a");
const seen = new Set();

const app = express();
app.use(express.urlencoded({ extended: false }));
app.get("/health", (_req, res) => res.json({ ok: true }));
app.post("/webhook/twilio", (req, res) => {
  const signature = req.get("X-Twilio-Signature") || "";
  const url = `${PUBLIC_URL}${req.originalUrl}`;
  if (!twilio.validateRequest(TWILIO_AUTH_TOKEN, signature, url, req.body)) {
    return res.status(403).send("bad signature");
  }
  const { MessageSid, From, Body } = req.body;
  if (allowed.has(From) && !seen.has(MessageSid)) {
    fs.writeSync(journal, JSON.stringify({ MessageSid, From, Body }) + "\n");
    fs.fsyncSync(journal);
    seen.add(MessageSid);
  }
  res.type("text/xml").send('<?xml version="1.0" encoding="UTF-8"?><Response></Response>');
});
app.listen(Number(PORT), "127.0.0.1");
