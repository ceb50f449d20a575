// Verifies the requests logged by tests/support/webhook_receiver.py
// (--format lettermint) with the official Node SDK's Webhook.verifyHeaders,
// an implementation independent of trackrelay's and of the Python SDK.
//
//   node verify_webhooks.js LOG.jsonl whsec_... [whsec_...]
//
// Prints one JSON array: per request, per secret, true or the SDK's error
// message, for the body as received ("verified") and with one change
// ("tampered", which must be refused).
'use strict';

const fs = require('node:fs');
const { Webhook } = require('lettermint');

const [log, ...secrets] = process.argv.slice(2);

function verify(secret, headers, body) {
  try {
    new Webhook(secret).verifyHeaders(headers, body);
    return true;
  } catch (error) {
    return `${error.name}: ${error.message}`;
  }
}

const results = fs
  .readFileSync(log, 'utf8')
  .split('\n')
  .filter((line) => line.trim() !== '')
  .map((line) => {
    const request = JSON.parse(line);
    const tampered = request.raw.replace('"data":{', '"data":{"x":1,');
    return {
      verified: secrets.map((s) => verify(s, request.headers, request.raw)),
      tampered: secrets.map((s) => verify(s, request.headers, tampered)),
    };
  });
process.stdout.write(`${JSON.stringify(results)}\n`);
