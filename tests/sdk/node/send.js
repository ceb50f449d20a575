// Calls trackrelay's sending API with the official Lettermint Node SDK
// (npm lettermint 2.7.0, package-lock.json here; `npm ci` from
// .ci/packages), for tests/send_api.rs. Reads one call as JSON on stdin
// ({base_url, token, op: "send" | "batch" | "ping", message or messages,
// idempotency_key}); prints {"ok": value} or {"error": {class, status,
// errorType, body}}: what the SDK made of the answer.
'use strict';
const sdk = require('lettermint');

const { Lettermint } = sdk;

// The SDK's error class by instanceof (its bundle is minified, so
// constructor names are not the source's), most specific first.
function className(error) {
  for (const name of ['ValidationError', 'ClientError', 'HttpRequestError', 'TimeoutError']) {
    if (error instanceof sdk[name]) return name;
  }
  return error.name;
}

function compose(email, m) {
  let e = email.from(m.from).to(...m.to).subject(m.subject);
  if (m.cc) e = e.cc(...m.cc);
  if (m.bcc) e = e.bcc(...m.bcc);
  if (m.reply_to) e = e.replyTo(...m.reply_to);
  if (m.html !== undefined) e = e.html(m.html);
  if (m.text !== undefined) e = e.text(m.text);
  if (m.headers) e = e.headers(m.headers);
  if (m.metadata) e = e.metadata(m.metadata);
  if (m.tag) e = e.tag(m.tag);
  if (m.settings) e = e.settings(m.settings);
  if (m.route) e = e.route(m.route);
  for (const a of m.attachments || []) {
    e = e.attach(a.filename, a.content, a.content_id, a.content_type);
  }
  return e;
}

async function main() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  const call = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  const email = Lettermint.email(call.token, { baseUrl: call.base_url, timeout: 60000 });
  try {
    let result;
    if (call.op === 'ping') {
      result = await email.ping();
    } else if (call.op === 'batch') {
      if (call.idempotency_key) email.idempotencyKey(call.idempotency_key);
      result = await email.sendBatch(call.messages);
    } else {
      const e = compose(email, call.message);
      if (call.idempotency_key) e.idempotencyKey(call.idempotency_key);
      result = await e.send();
    }
    console.log(JSON.stringify({ ok: result }));
  } catch (error) {
    console.log(JSON.stringify({
      error: {
        class: className(error),
        status: error.statusCode ?? null,
        errorType: error.errorType ?? null,
        message: error.message,
        body: error.responseBody ?? null,
      },
    }));
  }
}

main();
